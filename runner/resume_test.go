package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

const helperEnv = "MATRIXCTL_RUNNER_HELPER_OUT"

func resumeCells() []matrix.Cell {
	var cells []matrix.Cell
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5"} {
		cells = append(cells, testCell(id))
	}
	return cells
}

// slowProber keeps every run in its probes phase for a while: d, or
// slow[cell] when set.
type slowProber struct {
	d    time.Duration
	slow map[string]time.Duration
}

func (p slowProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	if err := os.WriteFile(req.RecordsPath, []byte(`{"probe":"io","ok":true}`+"\n"), 0o644); err != nil {
		return ProbeReport{}, err
	}
	d := p.d
	if s, ok := p.slow[strings.TrimPrefix(req.DockerHost, "fake://")]; ok {
		d = s
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	return ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}, nil
}

// vmScripts makes every machine a real process group (sh + sleep) that
// carries marker in its command line and outlives a killed controller.
func vmScripts(marker string) map[string]*script {
	s := map[string]*script{}
	for _, c := range resumeCells() {
		s[c.ID] = &script{spawn: []string{"sh", "-c", "sleep 600; : " + marker}}
	}
	return s
}

// TestHelperController is the controller process that
// TestSIGKILLAndResume kills; it does nothing in a normal test run.
func TestHelperController(t *testing.T) {
	out := os.Getenv(helperEnv)
	if out == "" {
		t.Skip("helper process for TestSIGKILLAndResume")
	}
	fake := newFake(vmScripts(out))
	_, err := Run(context.Background(), resumeCells(), Options{
		// c1 and c2 finish; c3 and c4 are still in their probes when the
		// controller is killed; c5 never starts.
		Provider: fake, Prober: slowProber{d: 300 * time.Millisecond, slow: map[string]time.Duration{"c3": time.Minute, "c4": time.Minute, "c5": time.Minute}},
		Out: out, Parallel: 2,
		HostCPUs: 4, HostMemoryMB: 8192, ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal("the controller was meant to be killed before it finished")
}

func TestSIGKILLAndResume(t *testing.T) {
	testutil.RequiresBinary(t, "sh", "sleep")
	out := filepath.Join(t.TempDir(), "results-sigkill")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperController$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Wait until c1 and c2 finished and c3 and c4 run with their machines.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(out, JournalName))
		st, err := readJournal(strings.NewReader(string(b)))
		if err == nil && len(st.Finished) >= 2 {
			withMachine := 0
			for _, p := range st.InFlight {
				if p.Pid != 0 {
					withMachine++
				}
			}
			if withMachine >= 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller made no progress; journal:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// SIGKILL the controller only (not its process group): its machines
	// are left behind as orphans, as after a real crash.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()

	b, _ := os.ReadFile(filepath.Join(out, JournalName))
	before, err := readJournal(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(testutil.Processes(out)) != 2 {
		t.Fatalf("test setup: the killed controller left no machine behind to clean up; journal:\n%s", b)
	}
	// the killed controller's results.json already holds the whole plan
	if p := readResults(t, out).Plan; p == nil || len(p.Cells) != len(resumeCells()) {
		t.Errorf("results.json of the killed controller: plan %+v, want its %d cells", p, len(resumeCells()))
	}
	t.Logf("killed controller: %d runs finished, %d in flight, %d orphan processes",
		len(before.Finished), len(before.InFlight), len(testutil.Processes(out)))

	// Resume in this process with machines that finish quickly.
	fake := newFake(vmScripts(out))
	f, err := Resume(context.Background(), Options{
		Provider: fake, Prober: slowProber{d: 50 * time.Millisecond}, Out: out, Parallel: 2, ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	got := readResults(t, out)
	seen := map[string]int{}
	for _, r := range got.Runs {
		seen[r.Cell]++
		if r.Verdict != results.Pass {
			t.Errorf("%s: %s %s", r.Cell, r.Verdict, r.Reason)
		}
	}
	for _, c := range resumeCells() {
		if seen[c.ID] != 1 {
			t.Errorf("cell %s appears %d times in results.json, want exactly 1", c.ID, seen[c.ID])
		}
	}
	if len(got.Runs) != len(resumeCells()) || len(f.Runs) != len(got.Runs) || got.Finished.IsZero() {
		t.Errorf("results.json: %d runs, finished %v", len(got.Runs), got.Finished)
	}
	// runs finished before the kill are kept as they were, not run again
	for k, run := range before.Finished {
		if fake.attempts[k.Cell+"/1"] != 0 {
			t.Errorf("%s finished before the kill but was booted again", k.Cell)
		}
		for _, r := range got.Runs {
			if r.Cell == k.Cell && !r.Started.Equal(run.Started) {
				t.Errorf("%s: finished run was replaced", k.Cell)
			}
		}
	}
	// every in-flight run ran again exactly once
	if len(before.Finished) != 2 || len(before.InFlight) != 2 {
		t.Errorf("before resume: %d finished, %d in flight; want 2 and 2", len(before.Finished), len(before.InFlight))
	}
	for k := range before.InFlight {
		if n := fake.attempts[k.Cell+"/1"]; n != 1 {
			t.Errorf("%s was in flight: booted %d times on resume, want 1", k.Cell, n)
		}
	}
	testutil.NoProcessesLeft(t, out)
}
