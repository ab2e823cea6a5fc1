package bisect

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
)

// Executor makes the runs of a bisection: run n of version i is a one-cell,
// one-repeat run of the runner in Dir/runs/<cell>/r<n>, with its own
// journal, results.json and artifacts. A run whose results.json is complete
// is read back, one with a journal but no results is resumed (its leftover
// VM killed), so a bisection interrupted in any way redoes no finished run.
type Executor struct {
	Dir string
	// Cells: the cell of each release, and Releases their names
	// (Config.Versions, same order).
	Cells    []matrix.Cell
	Releases []string
	// Options is the template of each run; Out is replaced, Repeat forced to 1.
	Options runner.Options
	// Inject, when set, is the test fault of a bisection that proves itself.
	Inject *Injection
	// OnRun, when set, hears of each run's verdict (progress).
	OnRun func(cell string, n int, v results.Verdict, reused bool)
}

// ReleaseCell is cell booted on the kernel package pkg
// (linux-image-6.1.0-47-amd64): the cell's ID gets the release
// (…-overlay2-6.1.0-47-amd64), and it runs once per call.
func ReleaseCell(cell matrix.Cell, pkg string) matrix.Cell {
	c := cell
	c.Kernel.Package = pkg
	c.ID = cell.ID + "-" + strings.TrimPrefix(pkg, "linux-image-")
	c.Settings.Repeats = 1
	return c
}

// DockerCell is cell with the Docker build version (an exact Debian
// version of cell's docker package, 20.10.5+dfsg1-1+deb11u2): the cell's ID
// gets the build (…-overlay2-docker-20.10.5-dfsg1-1-deb11u2).
func DockerCell(cell matrix.Cell, version string) matrix.Cell {
	c := cell
	c.Docker.Version = version
	c.ID = cell.ID + "-docker-" + strings.NewReplacer("+", "-", "~", "-", ":", "-").Replace(version)
	c.Settings.Repeats = 1
	return c
}

// Injection is a documented test fault for proving a bisection on real
// cells: from release From on, each run gets Fault with probability
// Probability (1: every run), decided from Seed, the version and the run
// number, so a replay makes the same choices. Without it nothing is injected.
type Injection struct {
	Fault       string  `json:"fault"`
	From        string  `json:"from"` // the first version that gets it
	Probability float64 `json:"probability"`
	Seed        uint64  `json:"seed"`
}

// Applies says whether run n of version gets the fault; atOrAfter says
// whether version is From or a later release.
func (in *Injection) Applies(version string, n int, atOrAfter bool) bool {
	if in == nil || !atOrAfter {
		return false
	}
	if in.Probability >= 1 {
		return true
	}
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], in.Seed)
	h.Write(b[:])
	h.Write([]byte(version))
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	u := float64(h.Sum64()>>11) / (1 << 53)
	return u < in.Probability
}

// RunDir is where run n of cell lives.
func (e *Executor) RunDir(cell string, n int) string {
	return filepath.Join(e.Dir, runner.RunDir(cell, n))
}

// Run is the executor's RunFunc.
func (e *Executor) Run(ctx context.Context, i, n int) (results.Verdict, error) {
	cell := e.Cells[i]
	dir := e.RunDir(cell.ID, n)
	if f, err := readFinished(dir); err != nil {
		return "", err
	} else if f != nil {
		v := verdictOf(f)
		if e.OnRun != nil {
			e.OnRun(cell.ID, n, v, true)
		}
		return v, nil
	}
	opts := e.Options
	opts.Out, opts.Repeat = dir, 1
	var f *results.File
	var err error
	if _, serr := os.Stat(filepath.Join(dir, runner.JournalName)); serr == nil {
		f, err = runner.Resume(ctx, opts)
	} else {
		if e.Inject != nil {
			from := slices.Index(e.Releases, e.Inject.From)
			if e.Inject.Applies(e.Releases[i], n, from >= 0 && i >= from) {
				cell.Settings.Faults = append(slices.Clone(cell.Settings.Faults), e.Inject.Fault)
			}
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", err
		}
		f, err = runner.Run(ctx, []matrix.Cell{cell}, opts)
	}
	if err != nil {
		return "", err
	}
	v := verdictOf(f)
	if e.OnRun != nil {
		e.OnRun(cell.ID, n, v, false)
	}
	return v, nil
}

// Boundary reads the evidence at res's answer from the runs' results: the
// first run of FirstBad with the bad verdict, and every counted run of
// LastGood (its infra errors said nothing of it).
// Dirs are relative to e.Dir.
func (e *Executor) Boundary(res *Result) (*results.BisectBoundary, error) {
	if res == nil || res.FirstBad == "" {
		return nil, nil
	}
	b := &results.BisectBoundary{}
	found := false
	for _, st := range res.Steps {
		for j, v := range st.Verdicts {
			switch {
			case st.Version == res.FirstBad && v == res.Bad && !found:
				r, err := e.runEvidence(st, j+1)
				if err != nil {
					return nil, err
				}
				b.Bad, found = r, true
			case st.Version == res.LastGood && st.Judgement == Good && counted(v):
				r, err := e.runEvidence(st, j+1)
				if err != nil {
					return nil, err
				}
				b.Good = append(b.Good, r)
			}
		}
	}
	return b, nil
}

func (e *Executor) runEvidence(st Step, n int) (results.BisectRun, error) {
	dir := e.RunDir(e.Cells[st.Index].ID, n)
	rel, err := filepath.Rel(e.Dir, dir)
	if err != nil {
		return results.BisectRun{}, err
	}
	r := results.BisectRun{Release: st.Version, N: n, Dir: filepath.ToSlash(rel), Verdict: st.Verdicts[n-1]}
	f, err := readFinished(dir)
	if err != nil || f == nil {
		return r, err
	}
	run := f.Runs[len(f.Runs)-1]
	r.Reason = run.Reason
	top := 0
	for _, fd := range run.Findings {
		top = max(top, fd.Severity.Rank())
	}
	for _, fd := range run.Findings {
		if top > 0 && fd.Severity.Rank() == top {
			r.Findings = append(r.Findings, fd)
		}
	}
	return r, nil
}

// verdictOf is the verdict of a one-run results file (infra-error when the
// runner recorded none).
func verdictOf(f *results.File) results.Verdict {
	if len(f.Runs) == 0 {
		return results.InfraError
	}
	return f.Runs[len(f.Runs)-1].Verdict
}

// readFinished returns the results of a finished run in dir, or nil.
func readFinished(dir string) (*results.File, error) {
	b, err := os.ReadFile(filepath.Join(dir, runner.ResultsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f results.File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, runner.ResultsName), err)
	}
	if f.Finished.IsZero() || len(f.Runs) == 0 {
		return nil, nil
	}
	return &f, nil
}
