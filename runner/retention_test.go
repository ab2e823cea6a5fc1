package runner

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPruneResultsKeepsRecentAndRunning(t *testing.T) {
	parent := t.TempDir()
	now := time.Now()
	mk := func(name string, age time.Duration, files ...string) string {
		d := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(d, "runs"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte("{}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			at := now.Add(-age)
			if err := os.Chtimes(filepath.Join(d, f), at, at); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	old := mk("nightly-1", 40*24*time.Hour, ResultsName, JournalName)
	recent := mk("nightly-2", 2*24*time.Hour, ResultsName, JournalName)
	running := mk("nightly-3", 40*24*time.Hour, ResultsName, JournalName)
	notResults := mk("notes", 90*24*time.Hour, "README")
	crashed := mk(pruningPrefix+"nightly-0-x", 0, ResultsName)

	j, err := openJournal(filepath.Join(running, JournalName)) // a controller (resume) on it
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if !InProgress(running) || InProgress(old) {
		t.Fatalf("InProgress: running %v, finished %v", InProgress(running), InProgress(old))
	}

	res, err := PruneResults(parent, 30*24*time.Hour, now, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Path != old {
		t.Fatalf("dry run: removed %+v", res.Removed)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("dry run removed %s: %v", old, err)
	}
	res, err = PruneResults(parent, 30*24*time.Hour, now, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Path != old || res.Freed <= 0 {
		t.Errorf("removed %+v freed %d, want %s", res.Removed, res.Freed, old)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Path != running || res.Skipped[0].Reason != "run in progress" {
		t.Errorf("skipped %+v, want %s in progress", res.Skipped, running)
	}
	for _, gone := range []string{old, crashed} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	for _, kept := range []string{recent, running, notResults} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
}
