package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports"
)

// TestMergeHistoryFeedsTheGate is the fan-out's regression gate: the merge
// step appends the merged run to the history it is given, so the first
// night's report finds a database (no usage error) and the next night's
// report flags a cell that passed in the first merge and fails now.
func TestMergeHistoryFeedsTheGate(t *testing.T) {
	tmp := t.TempDir()
	db := filepath.Join(tmp, "history.db")
	// Night one: the fixture with its crashing cell passing.
	f, err := reports.Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	night1 := filepath.Join(tmp, "night1-shard")
	copyDir(t, fixture, night1)
	f.Started = f.Started.Add(-24 * time.Hour)
	f.RunID += "-yesterday"
	for i := range f.Runs {
		if f.Runs[i].Verdict != results.Pass && f.Runs[i].Verdict != results.Unsupported && f.Runs[i].Verdict != results.InfraError {
			f.Runs[i].Verdict, f.Runs[i].Findings = results.Pass, nil
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(night1, reports.ResultsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, shard := range []string{night1, fixture} {
		out := filepath.Join(tmp, "merged"+strconv.Itoa(i))
		if code, stdout, stderr := run(t, "merge", "-o", out, "--history", db, shard); code != ExitOK {
			t.Fatalf("merge --history: code %d\n%s%s", code, stdout, stderr)
		}
		code, _, stderr := run(t, "report", out, "--history", db, "--format", "markdown", "-o", filepath.Join(tmp, "r.md"), "--fail-on", "regressions")
		if want := []int{ExitOK, ExitFailed}[i]; code != want || i == 1 && !strings.Contains(stderr, "regressions") {
			t.Errorf("night %d: report --fail-on regressions: code %d, want %d; stderr %q", i+1, code, want, stderr)
		}
	}
	if code, _, stderr := run(t, "merge", "-o", filepath.Join(tmp, "m"), "--history", tmp, fixture); code != ExitInfra || !strings.Contains(stderr, "history") {
		t.Errorf("merge --history DIR: code %d, stderr %q; want %d naming the history", code, stderr, ExitInfra)
	}
}

// copyDir copies the regular files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
