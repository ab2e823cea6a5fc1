package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/local"
)

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--provider", "vagrantx"}, "--provider"},
		{[]string{"run", "--accel", "hvf"}, "--accel"},
		{[]string{"run", "--repeat", "-1"}, "negative"},
		{[]string{"run", "--parallel", "0"}, `--parallel "0"`},
		{[]string{"run", "--parallel", "many"}, `--parallel "many"`},
		{[]string{"run", "--provider", "local", "--probes", "disk"}, "--probes disk"},
		{[]string{"run", "--progress", "fancy", "--provider", "local"}, "--progress"},
		{[]string{"run", "-f", "/nonexistent/matrix.yaml"}, "matrix.yaml"},
		{[]string{"run", "--resume", "/nonexistent/results"}, "/nonexistent/results"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want %d naming %q", tc.args, code, errOut, ExitUsage, tc.want)
		}
	}
}

// requiresHostDocker ends t through testutil.RequiresDocker unless the host's
// dockerd, the local provider's daemon, answers.
func requiresHostDocker(t *testing.T) {
	t.Helper()
	testutil.RequiresDocker(t, (&local.Provider{}).Prepare(context.Background(), runner.Request{}))
}

// TestIntegrationRunLocal qualifies this host through the CLI: the real
// probes against the host's real dockerd.
func TestIntegrationRunLocal(t *testing.T) {
	testutil.Integration(t)
	requiresHostDocker(t)
	out := filepath.Join(t.TempDir(), "results")
	cache := testutil.CacheDir()
	code, stdout, stderr := run(t, "run", "--provider", "local", "--soak", "2s", "--out", out,
		"--cache", cache, "--history", filepath.Join(t.TempDir(), "history.db"), "--progress", "lines")
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	f, b := readResultsJSON(t, out)
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

const mainHelperEnv = "MATRIXCTL_MAIN_HELPER_ARGS"

// TestHelperMain runs matrixctl's Main in a subprocess for the signal
// tests; it does nothing in a normal test run.
func TestHelperMain(t *testing.T) {
	args := os.Getenv(mainHelperEnv)
	if args == "" {
		t.Skip("helper process for TestIntegrationInterruptAndResume")
	}
	os.Exit(Main(context.Background(), Streams{In: strings.NewReader(""), Out: os.Stdout, ErrOut: os.Stderr}, strings.Split(args, "\x1f")))
}

// TestIntegrationInterruptAndResume: Ctrl-C during a run stops it with exit
// 130 and a resumable directory; --resume finishes it.
func TestIntegrationInterruptAndResume(t *testing.T) {
	testutil.Integration(t)
	requiresHostDocker(t)
	out := filepath.Join(t.TempDir(), "results")
	cache := testutil.CacheDir()
	args := []string{"run", "--provider", "local", "--probes", "io", "--soak", "30s", "--out", out, "--cache", cache, "--history", "none", "--progress", "lines"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMain$", "-test.count=1")
	cmd.Env = append(os.Environ(), mainHelperEnv+"="+strings.Join(args, "\x1f"))
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(stderr.String(), ": probes") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("no probes phase:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitAborted || !strings.Contains(stderr.String(), "--resume") {
		t.Fatalf("after Ctrl-C: %v\n%s", err, stderr.String())
	}
	// The interrupted run's results.json has its plan, and its report lists
	// the run that never ended as interrupted (it once said "every cell ran").
	f, b := readResultsJSON(t, out)
	if f.Plan == nil || len(f.Plan.Cells) != 1 || f.Plan.Cells[0].Status != results.PlanSelected || f.Plan.Cells[0].Repeats != 1 || len(f.Runs) != 0 {
		t.Fatalf("results.json of the interrupted run: %s", b)
	}
	rep := reportJSON(t, out)
	if p := rep.Summary.Plan; p == nil || p.Planned != 1 || p.Ran != 0 || p.NotRun != 1 || p.Interrupted != 1 ||
		len(rep.NotRun) != 1 || rep.NotRun[0].Class != reports.ClassInterrupted || rep.NotRun[0].Cell != f.Plan.Cells[0].Cell {
		t.Errorf("report of the interrupted run: plan %+v, not run %+v", rep.Summary.Plan, rep.NotRun)
	}
	if !strings.Contains(stderr.String(), "; ETA ") {
		t.Errorf("progress lines without an ETA:\n%s", stderr.String())
	}
	code, stdout, errOut := run(t, "run", "--resume", out, "--cache", cache, "--history", "none", "--progress", "lines")
	if code != ExitOK || !strings.Contains(stdout, "1 pass") {
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout, errOut)
	}
}

// reportJSON builds the JSON report of the results directory out.
func reportJSON(t *testing.T, out string) *reports.Report {
	t.Helper()
	code, stdout, stderr := run(t, "report", out, "--format", "json", "-o", "-", "--history", "none")
	if code != ExitOK {
		t.Fatalf("report %s: exit %d\n%s", out, code, stderr)
	}
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("report json: %v\n%s", err, stdout)
	}
	return &r
}

// readResultsJSON reads out/results.json: the file, and its bytes for messages.
func readResultsJSON(t *testing.T, out string) (*results.File, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f results.File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f, b
}
