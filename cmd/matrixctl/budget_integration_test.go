package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

// TestIntegrationBudgetQEMU runs two real cells through the CLI with a
// budget of three VM-runs: a clean overlay2 cell and a vfs cell made flaky
// with a probabilistic sysrq panic. Every run must be calibrated, the flaky
// cell's runs must record their draws and get the verdict their draw
// decided (a crash exactly when injected), results.json must account for
// the budget, and recommend must answer from the directory. While its first
// VM runs, `cache ls` and `cache prune --max-size 0` run on its cache: the
// run's entries are skipped as in use, an unused one is freed, the run passes.
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
	// The run also proves `cache prune` safe beside it (no VM of its own:
	// ~1 s of hard links and listing): its cache is a hard-linked copy of
	// the shared cache's entries for this spec plus an extra kernel entry
	// it does not use; a prune --max-size 0 while its VM runs must skip the
	// run's entries as in use and free the extra one.
	cache, used, extra := pruneCacheFor(t, spec)
	pruned := make(chan string, 1)
	go func() { pruned <- pruneWhileRunning(t, cache, out) }()
	code, stdout, stderr := run(t, "run", "-f", spec, "--budget", "3", "--fault-seed", "1", "--parallel", "1", "--out", out,
		"--cache", cache, "--history", "none", "--progress", "lines")
	t.Logf("exit %d\n%s\n%s", code, stdout, stderr)
	checkPruneBesideRun(t, <-pruned, cache, used, extra)
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
	// The finished run's results directory is what prune-results removes
	// (beside the run it was in progress: kept).
	code, stdout, stderr = run(t, "cache", "prune-results", filepath.Dir(out), "--older-than", "0s")
	t.Logf("prune-results after the run: exit %d\n%s%s", code, stdout, stderr)
	if _, err := os.Stat(out); code != ExitOK || !errors.Is(err, os.ErrNotExist) || !strings.Contains(stdout, "removed 1 results directories") {
		t.Errorf("prune-results did not remove the finished run's directory: exit %d, %v", code, err)
	}
	testutil.NoProcessesLeft(t, out)
}

// pruneCacheFor makes the cache the budget run uses: the shared test
// cache's kernel and rootfs entries for spec's cell (built there first if
// missing, so CI builds them once) and its apt state, hard-linked into a
// temp dir, plus a copy of the kernel entry under another key that the run
// never asks for. It returns the dir, the run's entry paths and the extra one.
func pruneCacheFor(t *testing.T, spec string) (dir string, used []string, extra string) {
	t.Helper()
	cells, err := (&cellSelection{}).load(spec)
	if err != nil || len(cells) == 0 {
		t.Fatalf("plan %s: %v", spec, err)
	}
	c := cells[0]
	shared, err := images.New(testutil.CacheDir(), images.WithHashVerify(false), images.WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	k, err := shared.Kernel(context.Background(), c.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	r, err := shared.RootfsWith(context.Background(), c.Distro, c.Docker, c.Settings.Packages, testutil.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	entryOf := func(kind, file string) string {
		rel, err := filepath.Rel(filepath.Join(shared.Dir(), kind), file)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("%s is not in %s/%s", file, shared.Dir(), kind)
		}
		return filepath.Join(kind, strings.Split(rel, string(filepath.Separator))[0])
	}
	kernel, rootfs := entryOf("kernels", k.Vmlinuz), entryOf("rootfs", r.Image)
	extra = filepath.Join(dir, "kernels", "00000000000000000000000000e8a7a0")
	for _, l := range []struct{ from, to string }{
		{kernel, filepath.Join(dir, kernel)}, {rootfs, filepath.Join(dir, rootfs)},
		{"apt", filepath.Join(dir, "apt")}, {kernel, extra},
	} {
		if err := os.MkdirAll(filepath.Dir(l.to), 0o755); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.Command("cp", "-al", filepath.Join(shared.Dir(), l.from), l.to).CombinedOutput(); err != nil {
			t.Fatalf("cp -al %s: %v: %s", l.from, err, b)
		}
	}
	return dir, []string{filepath.Join(dir, kernel), filepath.Join(dir, rootfs)}, extra
}

// pruneWhileRunning waits until the run's first VM writes its console
// (the run holds its entries by then), then lists and prunes the cache
// through the CLI and returns what both printed.
func pruneWhileRunning(t *testing.T, cache, out string) string {
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		if logs, _ := filepath.Glob(filepath.Join(out, "runs", "*", "r*", "console.log")); len(logs) > 0 {
			var b strings.Builder
			for _, args := range [][]string{{"cache", "ls", "--cache", cache}, {"cache", "prune", "--max-size", "0", "--cache", cache},
				{"cache", "prune-results", filepath.Dir(out), "--older-than", "0s"}} {
				code, stdout, stderr := run(t, args...)
				fmt.Fprintf(&b, "$ matrixctl %s\n%s%s(exit %d)\n", strings.Join(args, " "), stdout, stderr, code)
			}
			return b.String()
		}
		time.Sleep(time.Second)
	}
	return "the run never booted a VM"
}

func checkPruneBesideRun(t *testing.T, printed, cache string, used []string, extra string) {
	t.Helper()
	t.Logf("beside the run:\n%s", printed)
	for _, p := range used {
		key := filepath.Base(p)
		if !strings.Contains(printed, key) || !regexp.MustCompile(`skipped \w+ `+key+` .*: in use`).MatchString(printed) {
			t.Errorf("prune did not skip the run's entry %s as in use", key)
		}
		if _, err := os.Stat(filepath.Join(p, "manifest.json")); err != nil {
			t.Errorf("the run's entry %s was touched: %v", p, err)
		}
	}
	if !strings.Contains(printed, "removed kernel "+filepath.Base(extra)) || !regexp.MustCompile(`removed [1-9][0-9]* entries, [0-9.]+ [KMG]iB \([1-9][0-9]* bytes\)`).MatchString(printed) {
		t.Errorf("prune did not say it freed the unused kernel entry")
	}
	if _, err := os.Stat(extra); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unused entry %s still there: %v", extra, err)
	}
	if !strings.Contains(printed, "removed 0 results directories") {
		t.Errorf("prune-results removed the results of the run in progress")
	}
}
