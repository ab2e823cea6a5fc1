package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/reports/history"
)

const fixture = "../../reports/testdata/basic"

func TestReportFormats(t *testing.T) {
	out := t.TempDir()
	for format, want := range map[string]string{
		"html": "<!DOCTYPE html>", "json": `"schema": "matrixctl.report/v1"`,
		"junit": "<testsuites", "markdown": "## matrixctl report",
	} {
		file := filepath.Join(out, "r."+format)
		code, _, stderr := run(t, "report", fixture, "--history", "none", "--format", format, "-o", file)
		b, _ := os.ReadFile(file)
		if code != ExitOK || !strings.Contains(string(b), want) {
			t.Errorf("%s: code %d, stderr %q, output starts %.80q", format, code, stderr, b)
		}
	}
	code, stdout, _ := run(t, "report", fixture, "--history", "none", "--format", "markdown", "-o", "-")
	if code != ExitOK || !strings.Contains(stdout, "Most stable") {
		t.Errorf("stdout: code %d %q", code, stdout)
	}
	// The HTML links artifacts relative to where it is written.
	b, _ := os.ReadFile(filepath.Join(out, "r.html"))
	if !strings.Contains(string(b), "basic/runs/k5.10-debian11-docker20.10.5-overlay2/r2/console.log") {
		t.Error("html written outside DIR does not link artifacts relative to itself")
	}
}

func TestReportUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"report", fixture, "--format", "pdf"},
		{"report", fixture, "--fail-on", "sometimes"},
		{"report", fixture, "--since", "yesterday"},
		{"report", t.TempDir()},
		{"report", fixture, "--history", filepath.Join(t.TempDir(), "missing.db")},
		{"report", fixture, "--history", "none", "--fail-on", "regressions"},
		{"report"},
		{"merge", fixture},
	} {
		if code, _, stderr := run(t, args...); code != ExitUsage || stderr == "" {
			t.Errorf("%q: code %d, stderr %q; want %d with a message", args, code, stderr, ExitUsage)
		}
	}
}

func TestReportFailOn(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.md")
	if code, _, _ := run(t, "report", fixture, "--history", "none", "-o", out, "--format", "markdown", "--fail-on", "failures"); code != ExitFailed {
		t.Errorf("--fail-on failures: code %d, want %d", code, ExitFailed)
	}
	// A history in which the crashing cell always passed before: a regression.
	db := filepath.Join(t.TempDir(), history.FileName)
	store, err := history.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	f, err := reports.Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	past := &results.File{Schema: results.SchemaVersion, RunID: "yesterday", Provider: f.Provider, Started: f.Started.Add(-24 * time.Hour)}
	for _, r := range f.Runs {
		if r.Cell == "k5.10-debian11-docker20.10.5-overlay2" {
			r.Verdict, r.Findings = results.Pass, nil
			past.Runs = append(past.Runs, r)
		}
	}
	if _, err := store.Append(context.Background(), past); err != nil {
		t.Fatal(err)
	}
	store.Close()
	code, _, stderr := run(t, "report", fixture, "--history", db, "-o", out, "--format", "markdown", "--fail-on", "regressions")
	b, _ := os.ReadFile(out)
	if code != ExitFailed || !strings.Contains(stderr, "1 regressions") || !strings.Contains(string(b), "Regressions (1)") {
		t.Errorf("--fail-on regressions: code %d, stderr %q\n%s", code, stderr, b)
	}
	if code, _, _ := run(t, "report", fixture, "--history", db, "-o", out, "--format", "markdown", "--fail-on", "never"); code != ExitOK {
		t.Errorf("--fail-on never: code %d", code)
	}
}

func TestMergeCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "merged")
	code, stdout, stderr := run(t, "merge", "-o", out, fixture, fixture)
	if code != ExitOK || !strings.Contains(stdout, "37 runs") || !strings.Contains(stderr, "duplicate run") {
		t.Errorf("merge: code %d, stdout %q, stderr %.200q", code, stdout, stderr)
	}
	if _, err := reports.Load(out); err != nil {
		t.Errorf("merged dir does not load: %v", err)
	}
}
