// Package testutil holds test helpers shared by matrixctl's packages: gates
// that skip a test with a concrete reason when a capability is missing, and
// leak checks that fail a test which leaves a process behind.
package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// ownerEnv tags every process a test binary starts: children inherit the
// variable (also when they outlive their parent and are re-parented), so leak
// checks count only this binary's processes, not those of test packages that
// run at the same time and share the artifact cache.
const ownerEnv = "MATRIXCTL_TEST_OWNER"

var tagOnce sync.Once

// tagChildren makes sure processes started from now on carry ownerEnv.
func tagChildren() {
	tagOnce.Do(func() {
		if os.Getenv(ownerEnv) == "" {
			os.Setenv(ownerEnv, strconv.Itoa(os.Getpid()))
		}
	})
}

// Integration skips t under -short: it needs real VMs, kernels or a daemon.
// It also tags the processes the test starts, for NoProcessesLeft.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	tagChildren()
}

// RequiresRoot skips t when not running as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		t.Skipf("needs root, running as uid %d", uid)
	}
}

// RequiresBinary skips t when a program is not on PATH.
func RequiresBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := proc.LookPath(name); err != nil {
			t.Skipf("needs %s: %v", name, err)
		}
	}
}

// Processes returns the PIDs of running processes whose command line contains
// marker. Once a test called Integration, only processes started by this test
// binary (or its descendants) count.
func Processes(marker string) []string {
	tag := ""
	if v := os.Getenv(ownerEnv); v != "" {
		tag = ownerEnv + "=" + v
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []string
	for _, e := range entries {
		pid := e.Name()
		if pid == "" || pid[0] < '0' || pid[0] > '9' || pid == strconv.Itoa(self) {
			continue
		}
		b, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil {
			continue
		}
		if !strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker) {
			continue
		}
		if tag != "" && !hasEnv(pid, tag) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// NoProcessesLeft fails t if, after a short grace period, a process whose
// command line contains marker (for example a test's temp dir) still runs.
func NoProcessesLeft(t testing.TB, marker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := Processes(marker)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left behind matching %q: %v", marker, pids)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasEnv reports whether process pid's initial environment holds the entry kv.
func hasEnv(pid, kv string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		return false
	}
	for _, e := range strings.Split(string(b), "\x00") {
		if e == kv {
			return true
		}
	}
	return false
}

// CacheDir is the artifact cache tests share: MATRIXCTL_CACHE when set (CI
// shares kernels and rootfs images between packages within one run), else a
// reusable directory under os.TempDir().
func CacheDir() string {
	if d := os.Getenv("MATRIXCTL_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "matrixctl-test-cache")
}
