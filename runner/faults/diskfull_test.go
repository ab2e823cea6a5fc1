package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// hostFaults runs one cell through two host-side failures and returns a
// row for each: a corrupt cache entry (privateCache) and a full results
// disk (resultsDiskFull). They share one run to spare CI a VM boot.
func hostFaults(t *testing.T, c matrix.Cell, shared *images.Cache) []row {
	cache, corrupted, log := privateCache(t, c, shared)
	disk := resultsDiskFull(t, c, cache)
	name := "cache entry corrupt (host)"
	rebuilt := ""
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(l, "cache: rebuilding kernels/") {
			rebuilt = l
		}
	}
	mark, ev := "ok", ""
	switch {
	case rebuilt == "" || cache.Stats().Rebuilds < 1:
		mark, ev = "FAIL", fmt.Sprintf("the corrupt entry (%s) was not detected and rebuilt: %d rebuilds; log:\n%s", corrupted, cache.Stats().Rebuilds, log)
		t.Error(ev)
	case disk.got != string(results.Pass):
		mark, ev = "FAIL", "the cell did not pass on the rebuilt entry: "+disk.got
		t.Error(ev)
	default:
		ev = rebuilt + " → rebuilt from the package; the run was not failed (see the next row)"
	}
	return []row{{name, "pass (rebuilt)", disk.got, mark, oneLine(ev)}, disk}
}

// privateCache makes a cache of hard links to the shared cache's kernels,
// rootfs and apt entries and corrupts the cell's kernel entry in it (its
// vmlinuz replaced by a truncated copy: a new file, so the shared entry is
// untouched). Reusing the entry must detect the damage against the
// manifest and rebuild it; the cache's progress lines go to the returned buffer.
func privateCache(t *testing.T, c matrix.Cell, shared *images.Cache) (*images.Cache, string, *testutil.SyncBuffer) {
	t.Helper()
	k, err := shared.Kernel(context.Background(), c.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"kernels", "rootfs", "apt"} {
		if out, err := exec.Command("cp", "-al", filepath.Join(testutil.CacheDir(), d), filepath.Join(dir, d)).CombinedOutput(); err != nil {
			t.Fatalf("hard-link the cache's %s: %v: %s", d, err, out)
		}
	}
	rel, err := filepath.Rel(testutil.CacheDir(), k.Vmlinuz)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("kernel %s is not in the cache %s", k.Vmlinuz, testutil.CacheDir())
	}
	victim := filepath.Join(dir, rel)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	tmp := victim + ".corrupt"
	if err := os.WriteFile(tmp, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, victim); err != nil {
		t.Fatal(err)
	}
	log := &testutil.SyncBuffer{}
	cache, err := images.New(dir, images.WithProgress(log))
	if err != nil {
		t.Fatal(err)
	}
	return cache, rel, log
}

// resultsDiskFull runs a cell with its results directory on a small tmpfs
// that fills up (a ballast file written until ENOSPC) as the first attempt
// waits for dockerd, while the guest's logs stream into it and the guest
// writes its scratch disk (scratch.img lives in the run directory): QEMU
// pauses the guest on ENOSPC instead of failing its writes, and the
// watchdog, asking QEMU why the guest fell silent, ends the attempt as an
// infra-error. The ballast goes as the retry starts, and the retry passes.
// What was written before is intact: the journal still holds the first
// attempt, results.json parses, and the report counts only the passing
// attempt.
func resultsDiskFull(t *testing.T, c matrix.Cell, cache *images.Cache) row {
	name := "results disk full (host)"
	out := tmpfs(t, "512m") // a whole run fits: mkfs writes the 64 MiB ext4 journal alone
	ballast := filepath.Join(out, "ballast")
	hook := &phaseHook{on: func(attempt int, phase string) {
		switch {
		case attempt == 1 && phase == runner.PhaseDocker:
			if err := fill(ballast); err != nil {
				t.Errorf("fill the results disk: %v", err)
			}
		case attempt == 2 && phase == runner.PhasePrepare:
			if err := os.Remove(ballast); err != nil {
				t.Errorf("empty the results disk: %v", err)
			}
		}
	}}
	f, err := runner.Run(context.Background(), []matrix.Cell{c}, runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir(), Watchdog: watchdog},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 1, Retries: 1, Progress: hook,
	})
	if err != nil {
		j, _ := os.ReadFile(filepath.Join(out, runner.JournalName))
		t.Errorf("Run (results disk full): %v\njournal:\n%s", err, j)
		return row{name, string(results.Pass), "-", "FAIL", err.Error()}
	}
	if len(f.Runs) != 1 {
		t.Errorf("results disk full: %d runs", len(f.Runs))
		return row{name, string(results.Pass), "-", "FAIL", "no run"}
	}
	return check(t, name, results.Pass, f.Runs[0], func(r results.Run) (string, error) {
		if r.Attempt != 2 || len(r.Retried) != 1 {
			return "", fmt.Errorf("attempt %d, retried %+v: want the first attempt retried", r.Attempt, r.Retried)
		}
		first := r.Retried[0].Reason
		if !strings.Contains(first, "no space left on device") {
			return "", fmt.Errorf("first attempt's reason %q does not name the full disk", first)
		}
		if err := journalHasAttempt(out, r.Cell, 1); err != nil {
			return "", err
		}
		b, err := os.ReadFile(filepath.Join(out, runner.ResultsName))
		if err != nil {
			return "", err
		}
		var onDisk results.File
		if err := json.Unmarshal(b, &onDisk); err != nil || len(onDisk.Runs) != 1 {
			return "", fmt.Errorf("results.json after the full disk: %v, %d runs", err, len(onDisk.Runs))
		}
		rep, err := reports.Build(context.Background(), f, reports.Options{Dir: out})
		if err != nil {
			return "", err
		}
		if rep.Summary.Counted != 1 || rep.Summary.Passed != 1 {
			return "", fmt.Errorf("report counts %d run(s), %d passed; want the retry only", rep.Summary.Counted, rep.Summary.Passed)
		}
		return fmt.Sprintf("attempt 1 infra-error (%s), retried: attempt 2 pass, counted once", first), nil
	})
}

// phaseHook is a runner.Progress that calls on for every phase of every attempt.
type phaseHook struct {
	mu sync.Mutex
	on func(attempt int, phase string)
}

func (h *phaseHook) Planned(int, int) {}
func (h *phaseHook) Phase(_ string, _, attempt int, phase string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on(attempt, phase)
}
func (h *phaseHook) Done(results.Run) {}
func (h *phaseHook) Close()           {}

// tmpfs mounts a tmpfs of the given size on a new directory and unmounts
// it at cleanup, checking that the mount is gone.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "matrixctl-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		if b, err := os.ReadFile("/proc/self/mounts"); err == nil && strings.Contains(string(b), " "+dir+" ") {
			t.Errorf("tmpfs %s still mounted", dir)
		}
	})
	return dir
}

// fill writes zeros to path until the filesystem is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// journalHasAttempt checks that the journal recorded the start of attempt n.
func journalHasAttempt(out, cell string, n int) error {
	b, err := os.ReadFile(filepath.Join(out, runner.JournalName))
	if err != nil {
		return err
	}
	want := fmt.Sprintf(`"attempt":%d`, n)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"cell":"`+cell+`"`) && strings.Contains(line, want) {
			return nil
		}
	}
	return fmt.Errorf("journal lost attempt %d of %s:\n%s", n, cell, b)
}
