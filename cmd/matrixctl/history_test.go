package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

// TestHistoryPrune prunes a real history database through the CLI: the
// runs older than --older-than go, the recent ones stay.
func TestHistoryPrune(t *testing.T) {
	db := filepath.Join(t.TempDir(), "history.db")
	s, err := history.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, age := range []int{400, 200, 100, 3} {
		f := &results.File{Schema: results.SchemaVersion, RunID: fmt.Sprintf("age-%d", age), Provider: "qemu",
			Started: now.Add(-time.Duration(age) * 24 * time.Hour),
			Runs:    []results.Run{{Cell: "c1", Kernel: "6.1", Distro: "debian12", Docker: "27.0", Driver: "overlay2", Verdict: results.Pass}}}
		if _, err := s.Append(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	code, stdout, stderr := run(t, "history", "prune", "--older-than", "180d", "--history", db)
	if code != ExitOK || !strings.Contains(stdout, "pruned 2 runs (2 cell runs, 0 findings)") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	s, err = history.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs(context.Background())
	s.Close()
	if err != nil || strings.Join(runs, ",") != "age-100,age-3" {
		t.Errorf("runs left = %v, %v; want age-100, age-3", runs, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"history", "prune", "--history", db}, "--older-than is required"},
		{[]string{"history", "prune", "--older-than", "half a year", "--history", db}, `--older-than "half a year"`},
		{[]string{"history", "prune", "--older-than", "30d", "--history", filepath.Join(t.TempDir(), "none.db")}, "none.db"},
	} {
		if code, _, stderr := run(t, tc.args...); code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want %d naming %q", tc.args, code, stderr, ExitUsage, tc.want)
		}
	}
}
