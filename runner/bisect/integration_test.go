package bisect_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/bisect"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// TestIntegrationBisectKernel bisects three real releases of bookworm's 6.1
// line (the oldest, a middle one, the newest) on the small real cell, with
// the documented test fault (a sysrq panic) from the middle one on: the
// answer must be the middle release, in three VM-runs. A second search over
// the same directory must answer the same from the recorded runs alone.
// The cell boots with init: agent, the fastest host (the bisection, not the
// host, is under test; CI's time is short).
func TestIntegrationBisectKernel(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck", "apt-get", "dpkg-deb")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	spec, err := matrix.Parse("bisect.yaml", []byte(testutil.SmallSpec{Init: "agent"}.YAML()))
	if err != nil {
		t.Fatal(err)
	}
	planned, err := spec.Plan()
	if err != nil || len(planned) != 1 {
		t.Fatalf("plan: %v, %+v", err, planned)
	}
	cache, err := images.New(testutil.CacheDir(), images.WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	all, err := cache.KernelPackages(ctx, "6.1", "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 3 {
		t.Fatalf("bookworm has %d 6.1 releases, want 3 or more", len(all))
	}
	picked := []images.Release{all[0], all[len(all)/2], all[len(all)-1]}
	dir := t.TempDir()
	var made, reused int
	ex := &bisect.Executor{
		Dir: dir,
		Options: runner.Options{
			Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir()},
			Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
			Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
			Parallel: 1, Retries: 1,
		},
		Inject: &bisect.Injection{Fault: "sysrq-panic", From: picked[1].Package, Probability: 1},
		OnRun: func(cell string, n int, v results.Verdict, again bool) {
			t.Logf("%s r%d: %s (recorded: %v)", cell, n, v, again)
			if again {
				reused++
			} else {
				made++
			}
		},
	}
	cfg := bisect.Config{Calibrate: 1}
	for _, k := range picked {
		ex.Cells = append(ex.Cells, bisect.ReleaseCell(planned[0], k.Package))
		ex.Releases = append(ex.Releases, k.Package)
		cfg.Versions = append(cfg.Versions, k.Package)
	}
	res, err := bisect.Search(ctx, cfg, ex.Run)
	if err != nil {
		t.Fatalf("search: %v (%+v)", err, res)
	}
	t.Logf("answer: last good %s, first bad %s, %d runs; steps %+v", res.LastGood, res.FirstBad, res.Runs, res.Steps)
	if res.FirstBad != picked[1].Package || res.LastGood != picked[0].Package || res.Bad != results.KernelCrash || res.Runs != 3 || made != 3 {
		t.Errorf("got last good %s, first bad %s, bad %s, %d runs (%d made); want %s..%s, kernel-crash, 3 runs",
			res.LastGood, res.FirstBad, res.Bad, res.Runs, made, picked[0].Package, picked[1].Package)
	}
	again, err := bisect.Search(ctx, cfg, ex.Run)
	if err != nil || again.FirstBad != res.FirstBad || made != 3 || reused != 3 {
		t.Errorf("search again: %v, first bad %s; %d runs made in all, %d read back; want none made", err, again.FirstBad, made, reused)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "runs", "*", "*", "runs", "*", "*", "scratch.img")); len(left) > 0 {
		t.Errorf("scratch disks left: %v", left)
	}
	testutil.NoProcessesLeft(t, dir)
}
