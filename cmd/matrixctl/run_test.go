package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/runner/results"
	"github.com/matrixctl/matrixctl/runner/testutil"
)

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--provider", "vagrantx"}, "--provider"},
		{[]string{"run", "--accel", "hvf"}, "--accel"},
		{[]string{"run", "--repeat", "-1"}, "negative"},
		{[]string{"run", "--provider", "local", "--probes", "disk"}, "--probes disk"},
		{[]string{"run", "--progress", "fancy", "--provider", "local"}, "--progress"},
		{[]string{"run", "-f", "/nonexistent/matrix.yaml"}, "matrix.yaml"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want %d naming %q", tc.args, code, errOut, ExitUsage, tc.want)
		}
	}
}

// TestIntegrationRunLocal qualifies this host through the CLI: the real
// probes against the host's real dockerd.
func TestIntegrationRunLocal(t *testing.T) {
	testutil.Integration(t)
	if os.Geteuid() != 0 {
		t.Skip("needs the host dockerd (root in CI)")
	}
	out := filepath.Join(t.TempDir(), "results")
	cache := os.Getenv("MATRIXCTL_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "matrixctl-test-cache")
	}
	code, stdout, stderr := run(t, "run", "--provider", "local", "--soak", "2s", "--out", out,
		"--cache", cache, "--history", filepath.Join(t.TempDir(), "history.db"), "--progress", "lines")
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f results.File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 1 || f.Runs[0].Verdict != results.Pass || f.Provider != "local" {
		t.Fatalf("results.json: %s", b)
	}
	r := f.Runs[0]
	if len(r.Probes) != 3 || r.Artifacts["probes"] == "" {
		t.Fatalf("probes %+v artifacts %v", r.Probes, r.Artifacts)
	}
	st, err := os.Stat(filepath.Join(out, r.Artifacts["probes"]))
	if err != nil || st.Size() == 0 {
		t.Fatalf("probe records: %v", err)
	}
	if !strings.Contains(stderr, "pass") || !strings.Contains(stdout, "1 pass") {
		t.Errorf("progress/summary missing")
	}
}
