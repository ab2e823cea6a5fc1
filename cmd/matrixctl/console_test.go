package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpus = "../../runner/console/testdata/console"

// corpusLog writes the raw log of a corpus file (without its headers) to a temp file.
func corpusLog(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpus, rel))
	if err != nil {
		t.Fatal(err)
	}
	_, raw, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no header", rel)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConsoleCleanLogPrintsNothing(t *testing.T) {
	code, out, errOut := run(t, "console", corpusLog(t, "clean/boot-6.12-docker.log"))
	if code != ExitOK || out != "" {
		t.Fatalf("clean log: code %d, stdout %q, stderr %q; want 0 and no output", code, out, errOut)
	}
}

func TestConsoleJSONL(t *testing.T) {
	p := corpusLog(t, "synthetic/kernel-panic-sysrq-6.1.log")
	code, out, _ := run(t, "console", "--format", "jsonl", p)
	if code != ExitFailed {
		t.Fatalf("code %d, want %d for a fatal finding", code, ExitFailed)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1:\n%s", len(lines), out)
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &f); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"file": p, "category": "kernel-panic", "severity": "fatal",
		"title": "kernel panic: sysrq triggered crash", "start_line": 6.0, "end_line": 27.0} {
		if f[k] != want {
			t.Errorf("%s = %v, want %v", k, f[k], want)
		}
	}
}

func TestConsoleTextEscapesHostileBytes(t *testing.T) {
	in := "[ 1.0] Kernel panic - not syncing: \x1b[2Jwiped\u202e\n[ 1.1] ---[ end Kernel panic - not syncing: x ]---\n"
	var out, errOut bytes.Buffer
	code := Main(context.Background(), Streams{In: strings.NewReader(in), Out: &out, ErrOut: &errOut}, []string{"console", "-"})
	if code != ExitFailed {
		t.Fatalf("code %d, want %d", code, ExitFailed)
	}
	if strings.ContainsAny(out.String(), "\x1b\u202e") {
		t.Fatalf("output carries terminal escapes: %q", out.String())
	}
	if !strings.HasPrefix(out.String(), "-:1: fatal kernel-panic: kernel panic: ") {
		t.Fatalf("output = %q", out.String())
	}
}

func TestConsoleWarningOnlyExitsZero(t *testing.T) {
	code, out, _ := run(t, "console", corpusLog(t, "synthetic/warning-6.1.log"))
	if code != ExitOK || !strings.Contains(out, "warning warning: WARNING in ext4_dirty_folio") {
		t.Fatalf("code %d, output %q; want 0 and the warning", code, out)
	}
}

func TestConsoleMissingFile(t *testing.T) {
	clean := corpusLog(t, "clean/boot-5.10-docker.log")
	code, _, errOut := run(t, "console", clean, "/nonexistent/console.log")
	if code != ExitUsage || !strings.Contains(errOut, "/nonexistent/console.log") {
		t.Fatalf("code %d, stderr %q; want %d naming the file", code, errOut, ExitUsage)
	}
}

func TestConsoleBadFormat(t *testing.T) {
	code, _, errOut := run(t, "console", "--format", "xml", "x")
	if code != ExitUsage || !strings.Contains(errOut, "--format") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}
