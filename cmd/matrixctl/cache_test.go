package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
)

func TestParseSizeAndAge(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"50G", 50 << 30}, {"50g", 50 << 30}, {"1.5TiB", 3 << 39}, {"500MB", 500 << 20}, {"4096", 4096}, {"2k", 2048},
	} {
		if got, err := parseSize(c.in); err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "50X", "1e400G", "NaNG"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
	for _, c := range []struct {
		in   string
		want time.Duration
	}{{"14d", 14 * 24 * time.Hour}, {"2w", 14 * 24 * time.Hour}, {"36h", 36 * time.Hour}, {"0d", 0}} {
		if got, err := parseAge(c.in); err != nil || got != c.want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "14days", "-1h"} {
		if _, err := parseAge(bad); err == nil {
			t.Errorf("parseAge(%q): no error", bad)
		}
	}
}

func TestCachePruneFlagErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "prune", "--cache", dir}, "--older-than, --max-size"},
		{[]string{"cache", "prune", "--cache", dir, "--max-size", "lots"}, `--max-size "lots"`},
		{[]string{"cache", "prune", "--cache", dir, "--older-than", "2 weeks"}, `--older-than "2 weeks"`},
		{[]string{"cache", "prune-results", dir}, "--older-than is required"},
	} {
		code, _, stderr := run(t, c.args...)
		if code != ExitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d naming %q", c.args, code, stderr, ExitUsage, c.want)
		}
	}
}

// TestCacheLsAndPrune lists and prunes a cache of two fake entries through
// the CLI: a kernel and an unused rootfs.
func TestCacheLsAndPrune(t *testing.T) {
	dir := t.TempDir()
	mk := func(kind, key string, man map[string]any, size int) {
		d := filepath.Join(dir, kind, key)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "payload"), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(man)
		if err := os.WriteFile(filepath.Join(d, "manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("kernels", "k1", map[string]any{"created": time.Now().Add(-time.Hour), "kernel": map[string]string{"release": "6.1.0-28-amd64"}}, 1<<20)
	mk("rootfs", "r1", map[string]any{"created": time.Now().Add(-30 * 24 * time.Hour), "inputs": map[string]string{"docker": "20.10.24"},
		"rootfs": map[string]string{"suite": "bookworm"}}, 1<<20)
	code, stdout, stderr := run(t, "cache", "ls", "--cache", dir)
	if code != ExitOK || !strings.Contains(stdout, "KIND") || !strings.Contains(stdout, "6.1.0-28-amd64 (local)") ||
		!strings.Contains(stdout, "bookworm, docker 20.10.24") || !strings.Contains(stdout, "2 entries") {
		t.Fatalf("cache ls: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = run(t, "cache", "ls", "--cache", dir, "--json")
	var es []images.Entry
	if err := json.Unmarshal([]byte(stdout), &es); code != ExitOK || err != nil || len(es) != 2 || es[0].Key != "r1" {
		t.Fatalf("cache ls --json: exit %d %v\n%s", code, err, stdout)
	}
	code, stdout, stderr = run(t, "cache", "prune", "--cache", dir, "--older-than", "14d")
	if code != ExitOK || !strings.Contains(stdout, "removed rootfs r1") || !strings.Contains(stdout, "removed 1 entries") {
		t.Fatalf("cache prune: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "kernels", "k1", "payload")); err != nil {
		t.Errorf("recent kernel pruned: %v", err)
	}
}

func TestLowDiskWarning(t *testing.T) {
	if w := lowDiskWarning("/c", images.DiskSpace{Free: 50 << 30, Total: 100 << 30}); w != "" {
		t.Errorf("warning with room: %q", w)
	}
	w := lowDiskWarning(t.TempDir(), images.DiskSpace{Free: 2 << 30, Total: 100 << 30})
	for _, want := range []string{"2.0 GiB free of 100.0 GiB (2.0 %)", "matrixctl cache prune --max-size 0G"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
}

// FuzzParseSizeAge: the flag parsers never panic, never return a negative
// size or age, and accept what they print back.
func FuzzParseSizeAge(f *testing.F) {
	for _, s := range []string{"0", "50G", "1.5TiB", "14d", "2w", "36h", "-1G", "1e400G", "9999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if d, err := parseAge(s); err == nil && d < 0 {
			t.Fatalf("parseAge(%q) = %v", s, d)
		}
	})
}
