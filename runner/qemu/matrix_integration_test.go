package qemu_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// twoDrivers is a real matrix of two cells booted by the distro's own
// systemd (init: systemd): Debian's 6.1 kernel and bookworm's docker.io,
// overlay2 on xfs and vfs on ext4.
var twoDrivers = testutil.SmallSpec{
	Include: []string{
		`{kernel: "6.1", distro: debian12, driver: overlay2, scratch_fs: xfs}`,
		`{kernel: "6.1", distro: debian12, docker: distro, driver: vfs}`,
	},
	Probes: "[io, churn]", Timeout: "10m", CPUs: 2, Memory: 1536, Init: "systemd",
}.YAML()

// TestIntegrationQEMUMatrix runs a real matrix end to end: real Debian
// kernel, real rootfs, QEMU (TCG here), the guest's dockerd, the real
// probes, the console scanner and the host checker.
func TestIntegrationQEMUMatrix(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck", "xfs_repair")
	runnable := runnableCells(t, twoDrivers)
	cache, err := images.New(testutil.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "results")
	f, err := runner.Run(context.Background(), runnable, runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir()},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 1, Progress: runner.NewPlainProgress(testutil.LogWriter(t)),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, r := range f.Runs {
		t.Logf("%s: %s (%s) kernel %s docker %s", r.Cell, r.Verdict, r.Reason, r.KernelRelease, r.DockerServer)
		for _, ph := range r.Phases {
			t.Logf("  %-12s %8s %s", ph.Name, ph.Duration.Round(100*time.Millisecond), ph.Error)
		}
		if r.Verdict != results.Pass {
			t.Errorf("%s: verdict %s: %s; findings %+v", r.Cell, r.Verdict, r.Reason, r.Findings)
		}
		for _, name := range []string{"console", "agent", "dockerd", "probes", "checker", "qemu-cmdline"} {
			p := r.Artifacts[name]
			if st, err := os.Stat(filepath.Join(out, p)); p == "" || err != nil || st.Size() == 0 {
				t.Errorf("%s: artifact %s missing or empty (%q, %v)", r.Cell, name, p, err)
			}
		}
		if r.Checker == nil || !r.Checker.Clean {
			t.Errorf("%s: checker %+v", r.Cell, r.Checker)
		}
		checkSystemdHost(t, r)
	}
	if len(f.Runs) != len(runnable) {
		t.Fatalf("%d runs for %d cells", len(f.Runs), len(runnable))
	}
	matches, _ := filepath.Glob(filepath.Join(out, "runs", "*", "*", "scratch.img"))
	if len(matches) != 0 {
		t.Errorf("scratch disks left: %v", matches)
	}
	testutil.NoProcessesLeft(t, out)
}

// checkSystemdHost asserts that r ran on a guest like a real Debian 12
// Docker host: the distro's systemd as PID 1, cgroup v2 with Docker's
// systemd cgroup driver, AppArmor confining containers, and the harness's
// changes recorded.
func checkSystemdHost(t *testing.T, r results.Run) {
	t.Helper()
	h := r.Host
	if h == nil {
		t.Errorf("%s: no host evidence in results.json", r.Cell)
		return
	}
	t.Logf("%s: host init %q cgroup v%s (%s) security %v runc %s containerd %s cmdline %q, %d harness changes",
		r.Cell, h.Init, h.CgroupVersion, h.CgroupDriver, h.SecurityOptions, h.RuncVersion, h.ContainerdVersion, h.KernelCmdline, len(h.HarnessChanges))
	if !strings.HasPrefix(h.Init, "systemd") || h.InitMode != "systemd" {
		t.Errorf("%s: host init %q (mode %q), want the distro's systemd", r.Cell, h.Init, h.InitMode)
	}
	if h.CgroupVersion != "2" || h.CgroupDriver != "systemd" {
		t.Errorf("%s: cgroup v%s driver %q, want v2 and systemd", r.Cell, h.CgroupVersion, h.CgroupDriver)
	}
	if !slices.ContainsFunc(h.SecurityOptions, func(o string) bool { return strings.Contains(o, "apparmor") }) {
		t.Errorf("%s: security options %v lack apparmor", r.Cell, h.SecurityOptions)
	}
	if !strings.Contains(h.KernelCmdline, "panic=-1") || len(h.HarnessChanges) == 0 {
		t.Errorf("%s: kernel cmdline %q, %d harness changes", r.Cell, h.KernelCmdline, len(h.HarnessChanges))
	}
	if r.Artifacts["journal"] == "" {
		t.Errorf("%s: no journal artifact", r.Cell)
	}
}

// runnableCells plans spec and returns its runnable cells; it fails tb
// unless there are at least two.
func runnableCells(tb testing.TB, spec string) []matrix.Cell {
	tb.Helper()
	parsed, err := matrix.Parse("two-drivers.yaml", []byte(spec))
	if err != nil {
		tb.Fatal(err)
	}
	cells, err := parsed.Plan()
	if err != nil {
		tb.Fatal(err)
	}
	var runnable []matrix.Cell
	for _, c := range cells {
		if c.Status == matrix.StatusRunnable {
			runnable = append(runnable, c)
		}
	}
	if len(runnable) < 2 {
		tb.Fatalf("want two runnable cells, plan: %+v", cells)
	}
	return runnable
}
