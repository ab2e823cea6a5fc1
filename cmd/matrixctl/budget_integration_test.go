package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

// TestIntegrationBudgetQEMU runs two real cells through the CLI with a
// budget of three VM-runs: a clean overlay2 cell and a vfs cell made flaky
// with a probabilistic sysrq panic. Every run must be calibrated, the flaky
// cell's runs must record their draws and get the verdict their draw
// decided (a crash exactly when injected), results.json must account for
// the budget, and recommend must answer from the directory.
func TestIntegrationBudgetQEMU(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck")
	spec := filepath.Join(t.TempDir(), "budget.yaml")
	yaml := strings.Replace(testutil.SmallSpec{Init: "agent"}.YAML(), "driver: [overlay2]",
		"driver: [overlay2, vfs]\ninclude:\n  - {driver: vfs, faults: [{name: sysrq-panic, probability: 0.5}]}", 1)
	if err := os.WriteFile(spec, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "results")
	code, stdout, stderr := run(t, "run", "-f", spec, "--budget", "3", "--fault-seed", "1", "--parallel", "1", "--out", out,
		"--cache", testutil.CacheDir(), "--history", "none", "--progress", "lines")
	t.Logf("exit %d\n%s\n%s", code, stdout, stderr)
	if code != ExitOK && code != ExitFailed {
		t.Fatalf("run --budget: exit %d", code)
	}
	f, _ := readResultsJSON(t, out)
	if f.Budget == nil || f.Budget.Spent != len(f.Runs) || f.Budget.Spent < 2 || f.Budget.Spent > 3 || f.Budget.Stopped == "" {
		t.Fatalf("budget %+v with %d runs; want 2-3 runs spent and a stop reason", f.Budget, len(f.Runs))
	}
	for _, r := range f.Runs {
		if r.Calibration == nil || r.Calibration.CPUMiBps <= 0 {
			t.Errorf("%s r%d: no host calibration: %+v", r.Cell, r.Repeat, r.Calibration)
		}
		want := results.Pass
		if r.Driver == "vfs" {
			if len(r.FaultDraws) != 1 || r.FaultDraws[0].Injected != (r.FaultDraws[0].Draw < 0.5) {
				t.Errorf("%s r%d: fault draws %+v", r.Cell, r.Repeat, r.FaultDraws)
				continue
			}
			if r.FaultDraws[0].Injected {
				want = results.KernelCrash
			}
		} else if len(r.FaultDraws) != 0 {
			t.Errorf("%s r%d: draws on a cell without a probabilistic fault: %+v", r.Cell, r.Repeat, r.FaultDraws)
		}
		if r.Verdict != want {
			t.Errorf("%s r%d: %s (%s), want %s from its draw %+v", r.Cell, r.Repeat, r.Verdict, r.Reason, want, r.FaultDraws)
		}
	}
	// The plan: both cells selected, repeats left to the budget; the report
	// counts the budget's runs and lists no cell as not run.
	if p := f.Plan; p == nil || !p.Adaptive || len(p.Cells) != 2 || p.Cells[0].Status != results.PlanSelected || p.Cells[1].Status != results.PlanSelected {
		t.Errorf("plan %+v: want both cells selected, repeats adaptive", p)
	}
	rep := reportJSON(t, out)
	if p := rep.Summary.Plan; p == nil || p.Planned != 3 || p.Ran != len(f.Runs) || p.Interrupted != 0 || p.Unneeded != 3-len(f.Runs) ||
		len(rep.NotRun) != 0 {
		t.Errorf("report: plan counts %+v, not run %+v; want 3 planned, %d ran, none interrupted", p, rep.NotRun, len(f.Runs))
	}
	if !strings.Contains(stderr, "budget left: ") {
		t.Errorf("progress lines without what is left of the budget")
	}
	code, stdout, stderr = run(t, "recommend", out, "--history", "none")
	t.Logf("recommend: exit %d\n%s\n%s", code, stdout, stderr)
	if (code != ExitOK && code != ExitFailed) || !strings.Contains(stdout, "overlay2") {
		t.Errorf("recommend: exit %d, want an answer naming the clean overlay2 cell", code)
	}
	testutil.NoProcessesLeft(t, out)
}
