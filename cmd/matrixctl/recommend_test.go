package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

func TestRecommend(t *testing.T) {
	code, stdout, stderr := run(t, "recommend", fixture, "--history", "none")
	if code != ExitOK || !strings.Contains(stdout, "Winner: k6.12-debian13-docker26.1.5-overlay2") ||
		!strings.Contains(stdout, "Runner-up:") || !strings.Contains(stdout, "P(best)") {
		t.Errorf("code %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = run(t, "recommend", fixture, "--history", "none", "--require", "driver == zfs", "--format", "json")
	if code != ExitFailed || !strings.Contains(stdout, `"outcome": "none-qualifies"`) {
		t.Errorf("none qualifies: code %d, stdout %.300s", code, stdout)
	}
	code, stdout, _ = run(t, "recommend", fixture, "--history", "none", "--require", "kernel != 6.12", "--format", "markdown")
	if code != ExitFailed || !strings.Contains(stdout, "Too little evidence") {
		t.Errorf("too little evidence: code %d, stdout %s", code, stdout)
	}
	for _, args := range [][]string{
		{"recommend", fixture, "--history", "none", "--require", "docker >> 20"},
		{"recommend", fixture, "--history", "none", "--format", "yaml"},
		{"recommend", "--history", "none"},
		{"recommend", "--history", filepath.Join(t.TempDir(), "missing.db")},
	} {
		if code, _, stderr := run(t, args...); code != ExitUsage || stderr == "" {
			t.Errorf("%q: code %d, stderr %q; want %d and a message", args, code, stderr, ExitUsage)
		}
	}
	if _, _, stderr := run(t, "recommend", fixture, "--history", "none", "--require", "docker >> 20"); !strings.Contains(stderr, `--require: bad constraint "docker >> 20"`) {
		t.Errorf("bad constraint error does not name the flag and the expression: %q", stderr)
	}
}

// TestRecommendHistory: several nights in the history; a constraint that
// excludes the overall best cell answers with the best remaining one.
func TestRecommendHistory(t *testing.T) {
	db := filepath.Join(t.TempDir(), "history.db")
	s, err := history.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	cell := func(id, kernel string, v results.Verdict) results.Run {
		return results.Run{Cell: id, Kernel: kernel, Distro: "debian12", Docker: "20.10.24", Driver: "overlay2", Verdict: v}
	}
	for night := range 5 {
		f := &results.File{Schema: results.SchemaVersion, RunID: "night" + string(rune('a'+night)), Provider: "qemu",
			Started: t0.Add(time.Duration(night) * 24 * time.Hour)}
		second := results.Pass
		if night == 2 {
			second = results.ProbeFailure
		}
		f.Runs = []results.Run{cell("k6.12-best", "6.12", results.Pass), cell("k6.1-good", "6.1", results.Pass),
			cell("k5.10-flaky", "5.10", second)}
		if _, err := s.Append(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	code, stdout, stderr := run(t, "recommend", "--history", db, "--require", "kernel < 6.12", "--format", "json")
	if code != ExitOK || !strings.Contains(stdout, `"cell": "k6.1-good"`) {
		t.Fatalf("code %d, stderr %q, stdout %s", code, stderr, stdout)
	}
}
