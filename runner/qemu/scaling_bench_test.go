package qemu_test

import (
	"context"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/qemu"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

// BenchmarkMatrixScaling runs real cells under QEMU: one cell alone, then
// two cells with --parallel 2, and reports the wall times, their ratio
// (1.0 = perfect scaling, 2.0 = no gain) and the per-phase times of the
// single cell. Compare the boot phases with BenchmarkBoot in runner/qemu,
// which sets the provider beside a hand-written qemu -kernel boot.
func BenchmarkMatrixScaling(b *testing.B) {
	testutil.Integration(b)
	testutil.RequiresRoot(b)
	testutil.RequiresQEMU(b)
	testutil.RequiresBinary(b, "mmdebstrap", "e2fsck", "xfs_repair")
	runnable := runnableCells(b, twoDrivers)
	for i := range runnable {
		runnable[i].Settings.CPUs = 1
	}
	cache, err := images.New(testutil.CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	run := func(cells []matrix.Cell, parallel int) (time.Duration, *results.File) {
		start := time.Now()
		f, err := runner.Run(context.Background(), cells, runner.Options{
			Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir()},
			Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
			Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
			Out: filepath.Join(b.TempDir(), "results"), Parallel: parallel, Progress: runner.NewPlainProgress(io.Discard),
		})
		if err != nil {
			b.Fatalf("Run: %v", err)
		}
		for _, r := range f.Runs {
			if r.Verdict != results.Pass {
				b.Fatalf("%s: %s (%s)", r.Cell, r.Verdict, r.Reason)
			}
		}
		return time.Since(start), f
	}
	// Warm the image cache so neither side pays for downloads or builds.
	run(runnable[:1], 1)
	for b.Loop() {
		one, f := run(runnable[:1], 1)
		two, _ := run(runnable[:2], 2)
		b.ReportMetric(one.Seconds(), "s/1-cell")
		b.ReportMetric(two.Seconds(), "s/2-cells-parallel-2")
		b.ReportMetric(two.Seconds()/one.Seconds(), "scaling-ratio")
		for _, ph := range f.Runs[0].Phases {
			b.ReportMetric(ph.Duration.Seconds(), "s/phase-"+ph.Name)
		}
	}
}
