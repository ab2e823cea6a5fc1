package local

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
)

func TestOSRelease(t *testing.T) {
	p := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(p, []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"), 0o644)
	if n, s := osRelease(p); n != "debian12" || s != "bookworm" {
		t.Fatalf("got %q %q", n, s)
	}
	if n, _ := osRelease("/nonexistent"); n != "unknown" {
		t.Fatalf("got %q", n)
	}
}

func TestPrepareUnreachableIsInfra(t *testing.T) {
	p := &Provider{Host: "unix://" + filepath.Join(t.TempDir(), "no.sock")}
	err := p.Prepare(context.Background(), runner.Request{})
	if !runner.IsInfra(err) {
		t.Fatalf("Prepare against a missing socket: %v, want an infra error", err)
	}
}

// TestIntegrationLocalRun qualifies this machine: the real probes against
// the host's real dockerd, through the runner, into a results directory.
func TestIntegrationLocalRun(t *testing.T) {
	testutil.Integration(t)
	ctx := context.Background()
	p := &Provider{}
	testutil.RequiresDocker(t, p.Prepare(ctx, runner.Request{}))
	cell, err := HostCell(ctx, p, matrix.Settings{Probes: []string{"io", "net", "churn"}, Soak: 2 * time.Second, Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	f, err := runner.Run(ctx, []matrix.Cell{cell}, runner.Options{
		Provider: p, Prober: runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")}, Out: out, Retries: -1,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(f.Runs) != 1 {
		t.Fatalf("runs: %+v", f.Runs)
	}
	r := f.Runs[0]
	t.Logf("cell %s: verdict %s (%s), docker %s, kernel %s", r.Cell, r.Verdict, r.Reason, r.DockerServer, r.KernelRelease)
	for _, ph := range r.Phases {
		t.Logf("  phase %-12s %s %s", ph.Name, ph.Duration.Round(time.Millisecond), ph.Error)
	}
	if r.Verdict != results.Pass {
		t.Fatalf("verdict %s: %s\nfindings: %+v", r.Verdict, r.Reason, r.Findings)
	}
	if len(r.Probes) != 3 {
		t.Errorf("probe summaries: %+v", r.Probes)
	}
	var noConsole bool
	for _, fd := range r.Findings {
		noConsole = noConsole || fd.Category == "no-console"
	}
	if !noConsole || r.Artifacts["console"] != "" {
		t.Errorf("no-console not recorded honestly: findings %+v, artifacts %v", r.Findings, r.Artifacts)
	}
	// results.json on disk and the probe records
	var onDisk results.File
	b, err := os.ReadFile(filepath.Join(out, runner.ResultsName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil || len(onDisk.Runs) != 1 || onDisk.Provider != Name {
		t.Fatalf("results.json: %v %+v", err, onDisk)
	}
	// the probes ran at once by default, and results.json says so
	if mode := onDisk.Runs[0].ProbeMode; mode != "concurrent" {
		t.Errorf("results.json probe_mode %q, want concurrent", mode)
	}
	rf, err := os.Open(filepath.Join(out, r.Artifacts["probes"]))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	n := 0
	sc := bufio.NewScanner(rf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("probe record %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no probe records")
	}
	t.Logf("%d probe records in %s", n, r.Artifacts["probes"])
}
