// Package testutil holds test helpers shared by matrixctl's packages: gates
// that skip a test with a concrete reason when a capability is missing, and
// leak checks that fail a test which leaves a process behind.
package testutil

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Integration skips t under -short: it needs real VMs, kernels or a daemon.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
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
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("needs %s: %v", name, err)
		}
	}
}

// Processes returns the PIDs of running processes whose command line contains marker.
func Processes(marker string) []string {
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
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker) {
			pids = append(pids, pid)
		}
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
