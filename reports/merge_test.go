package reports

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

// shard writes the runs of basic for which keep is true into a new results
// dir (with their artifacts), as one machine of a sharded run would.
func shard(t *testing.T, basic *results.File, id string, keep func(results.Run) bool, edit func(*results.Run)) string {
	t.Helper()
	dir := t.TempDir()
	f := *basic
	f.RunID, f.Host, f.Runs = id, "host-"+id, nil
	for _, r := range basic.Runs {
		if !keep(r) {
			continue
		}
		if edit != nil {
			edit(&r)
		}
		f.Runs = append(f.Runs, r)
		for _, rel := range r.Artifacts {
			b, err := os.ReadFile(filepath.Join("testdata/basic", rel))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Shards write in their own order; Merge must not depend on it.
	for i, j := 0, len(f.Runs)-1; i < j; i, j = i+1, j-1 {
		f.Runs[i], f.Runs[j] = f.Runs[j], f.Runs[i]
	}
	b, err := json.Marshal(&f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMergeEqualsSingleRun(t *testing.T) {
	basic, err := Load("testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	even := func(r results.Run) bool { return len(r.Cell)%2 == 0 }
	a := shard(t, basic, "a", even, nil)
	b := shard(t, basic, "b", func(r results.Run) bool { return !even(r) }, nil)
	out := filepath.Join(t.TempDir(), "merged")
	sum, err := Merge(out, []string{b, a})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Runs, basic.Runs) {
		t.Errorf("merged runs differ from the single run")
	}
	if got.Host != "host-a,host-b" || got.RunID != sum.RunID || sum.Runs != len(basic.Runs) || len(sum.Duplicates) != 0 {
		t.Errorf("merged header %q %q, summary %+v", got.Host, got.RunID, sum)
	}
	for _, r := range basic.Runs {
		for _, rel := range r.Artifacts {
			want, _ := os.ReadFile(filepath.Join("testdata/basic", rel))
			have, err := os.ReadFile(filepath.Join(out, rel))
			if err != nil || string(want) != string(have) {
				t.Errorf("artifact %s not copied: %v", rel, err)
			}
		}
	}
	// Deterministic: same shards in another order give the same bytes.
	out2 := filepath.Join(t.TempDir(), "merged")
	if _, err := Merge(out2, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(filepath.Join(out, ResultsFile))
	b2, _ := os.ReadFile(filepath.Join(out2, ResultsFile))
	if string(b1) != string(b2) {
		t.Error("merge output depends on the order of the shards")
	}
	if _, err := Merge(out, []string{a}); err == nil {
		t.Error("merge into a non-empty directory succeeded")
	}
}

func TestMergeReportsDuplicatesAndConflicts(t *testing.T) {
	basic, err := Load("testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	const cell = "k6.1-debian12-docker20.10.24-overlay2"
	all := func(results.Run) bool { return true }
	onlyCell := func(r results.Run) bool { return r.Cell == cell }
	a := shard(t, basic, "a", all, nil)
	dup := shard(t, basic, "dup", onlyCell, nil)
	sum, err := Merge(filepath.Join(t.TempDir(), "m"), []string{a, dup})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Duplicates) != 3 || !sum.Duplicates[0].Identical || sum.Runs != len(basic.Runs) {
		t.Errorf("duplicates = %+v, runs %d", sum.Duplicates, sum.Runs)
	}
	conflict := shard(t, basic, "c", onlyCell, func(r *results.Run) {
		if r.Repeat == 2 {
			r.Verdict = results.KernelCrash
		}
	})
	out := filepath.Join(t.TempDir(), "m")
	_, err = Merge(out, []string{a, conflict})
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Repeat != 2 {
		t.Fatalf("merge with a conflict: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("merge wrote %s despite the conflict", out)
	}
	other := shard(t, basic, "o", onlyCell, nil)
	f, _ := Load(other)
	f.Spec = "other.yaml"
	bs, _ := json.Marshal(f)
	os.WriteFile(filepath.Join(other, ResultsFile), bs, 0o644)
	if _, err := Merge(filepath.Join(t.TempDir(), "m"), []string{a, other}); err == nil {
		t.Error("merged shards of different specs")
	}
}
