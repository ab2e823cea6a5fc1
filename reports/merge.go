package reports

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
)

// ErrConflict is returned (wrapped in a *ConflictError) when two shards hold
// the same cell and repeat with different verdicts.
var ErrConflict = errors.New("conflicting runs")

// RunKey identifies a run of a cell within a results file.
type RunKey struct {
	Cell   string `json:"cell"`
	Repeat int    `json:"repeat"`
}

// Duplicate is a cell run found in more than one shard with the same
// verdict. The copy from the first shard (in argument order) is kept.
type Duplicate struct {
	RunKey
	Dirs []string `json:"dirs"`
	// Identical is false when the copies differ in details (timings,
	// findings) although their verdicts agree.
	Identical bool `json:"identical"`
}

// Conflict is a cell run found in several shards with different verdicts.
type Conflict struct {
	RunKey
	Dirs     []string          `json:"dirs"`
	Verdicts []results.Verdict `json:"verdicts"`
}

// ConflictError lists every conflict; errors.Is(err, ErrConflict) holds.
type ConflictError struct{ Conflicts []Conflict }

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d conflicting runs:", len(e.Conflicts))
	for _, c := range e.Conflicts {
		fmt.Fprintf(&b, "\n  %s repeat %d:", c.Cell, c.Repeat)
		for i := range c.Dirs {
			fmt.Fprintf(&b, " %s in %s;", c.Verdicts[i], c.Dirs[i])
		}
	}
	return b.String()
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// MergeSummary says what Merge combined.
type MergeSummary struct {
	RunID      string      `json:"run_id"`
	Shards     int         `json:"shards"`
	Runs       int         `json:"runs"`
	Artifacts  int         `json:"artifacts"`
	Duplicates []Duplicate `json:"duplicates"`
}

// Merge combines the results directories of shards into out, as if one
// machine had run all their cells:
//
//   - runs are sorted by cell ID, then repeat (the order a single run writes);
//   - every artifact a kept run references is copied to the same relative
//     path under out;
//   - run_id is derived from the shards' run IDs ("merged-" + 16 hex digits
//     of their sorted SHA-256), started/finished span all shards, hosts and
//     providers are joined when they differ;
//   - a cell run present in several shards with the same verdict is a
//     duplicate: kept once (first shard in argument order) and listed in
//     MergeSummary.Duplicates;
//   - a cell run present in several shards with different verdicts is a
//     conflict: nothing is written and a *ConflictError lists all of them.
//
// Shards must come from the same spec (spec and spec_sha256 agree). out must
// not exist or be an empty directory.
func Merge(out string, dirs []string) (*MergeSummary, error) {
	if len(dirs) == 0 {
		return nil, errors.New("merge: no results directories given")
	}
	if err := checkEmptyDir(out); err != nil {
		return nil, err
	}
	type src struct {
		dir string
		run results.Run
		enc []byte
	}
	files := make([]*results.File, len(dirs))
	for i, d := range dirs {
		f, err := Load(d)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		files[i] = f
	}
	merged := &results.File{Schema: results.SchemaVersion, Spec: files[0].Spec, SpecHash: files[0].SpecHash}
	var ids, hosts, providers []string
	byKey := map[RunKey][]src{}
	for i, f := range files {
		if f.Spec != merged.Spec || f.SpecHash != merged.SpecHash {
			return nil, fmt.Errorf("merge: %s is from spec %q (sha256 %q), %s from %q (sha256 %q)",
				dirs[i], f.Spec, f.SpecHash, dirs[0], merged.Spec, merged.SpecHash)
		}
		ids = append(ids, f.RunID)
		hosts = append(hosts, f.Host)
		providers = append(providers, f.Provider)
		if merged.Started.IsZero() || !f.Started.IsZero() && f.Started.Before(merged.Started) {
			merged.Started = f.Started
		}
		if f.Finished.After(merged.Finished) {
			merged.Finished = f.Finished
		}
		for _, r := range f.Runs {
			enc, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("merge: %w", err)
			}
			k := RunKey{r.Cell, r.Repeat}
			byKey[k] = append(byKey[k], src{dir: dirs[i], run: r, enc: enc})
		}
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	merged.RunID = "merged-" + hex.EncodeToString(sum[:8])
	merged.Host = joinUnique(hosts)
	merged.Provider = joinUnique(providers)

	keys := make([]RunKey, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b RunKey) int { return cmp.Or(cmp.Compare(a.Cell, b.Cell), cmp.Compare(a.Repeat, b.Repeat)) })
	summary := &MergeSummary{RunID: merged.RunID, Shards: len(dirs), Duplicates: []Duplicate{}}
	var conflicts []Conflict
	type copyJob struct{ from, rel string }
	var jobs []copyJob
	for _, k := range keys {
		srcs := byKey[k]
		if len(srcs) > 1 {
			c := Conflict{RunKey: k}
			d := Duplicate{RunKey: k, Identical: true}
			for _, s := range srcs {
				c.Dirs = append(c.Dirs, s.dir)
				c.Verdicts = append(c.Verdicts, s.run.Verdict)
				d.Identical = d.Identical && bytes.Equal(s.enc, srcs[0].enc)
			}
			d.Dirs = c.Dirs
			if !allEqual(c.Verdicts) {
				conflicts = append(conflicts, c)
				continue
			}
			summary.Duplicates = append(summary.Duplicates, d)
		}
		kept := srcs[0]
		merged.Runs = append(merged.Runs, kept.run)
		for _, name := range slices.Sorted(maps.Keys(kept.run.Artifacts)) {
			jobs = append(jobs, copyJob{from: kept.dir, rel: kept.run.Artifacts[name]})
		}
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("merge: %w", &ConflictError{Conflicts: conflicts})
	}
	if merged.Runs == nil {
		merged.Runs = []results.Run{}
	}
	merged.Plan = mergePlans(files)
	summary.Runs = len(merged.Runs)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	copied := map[string]string{}
	for _, j := range jobs {
		if prev, ok := copied[j.rel]; ok {
			if prev != j.from {
				if err := sameFile(filepath.Join(prev, j.rel), filepath.Join(j.from, j.rel)); err != nil {
					return nil, fmt.Errorf("merge: artifact %s: %w", j.rel, err)
				}
			}
			continue
		}
		if err := copyArtifact(j.from, out, j.rel); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		copied[j.rel] = j.from
	}
	summary.Artifacts = len(copied)
	enc, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, ResultsFile), append(enc, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return summary, nil
}

func allEqual(vs []results.Verdict) bool {
	for _, v := range vs {
		if v != vs[0] {
			return false
		}
	}
	return true
}

func joinUnique(ss []string) string {
	ss = slices.DeleteFunc(slices.Clone(ss), func(s string) bool { return s == "" })
	slices.Sort(ss)
	return strings.Join(slices.Compact(ss), ",")
}

func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("merge: output %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("merge: output %s is not empty", dir)
	}
	return nil
}

// copyArtifact copies fromDir/rel to toDir/rel. Only regular files are copied
// (a symlink in a shard could point anywhere on the machine).
func copyArtifact(fromDir, toDir, rel string) error {
	if err := CheckArtifactPath(rel); err != nil {
		return err
	}
	src := filepath.Join(fromDir, filepath.FromSlash(rel))
	st, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a run may reference an artifact that was never written; the report says so
	}
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("artifact %s is not a regular file", src)
	}
	dst := filepath.Join(toDir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	outF, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(outF, in); err != nil {
		outF.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return outF.Close()
}

// sameFile fails when two shards hold different files under one relative path.
func sameFile(a, b string) error {
	ha, err := hashFile(a)
	if err != nil {
		return err
	}
	hb, err := hashFile(b)
	if err != nil {
		return err
	}
	if ha != hb {
		return fmt.Errorf("%s and %s differ", a, b)
	}
	return nil
}

func hashFile(name string) (string, error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
