package runner

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessOf returns the Process for pid, with its start time read from
// /proc, for providers to report in Machine.Process.
func ProcessOf(pid int, group bool) (Process, error) {
	st, err := procStartTime(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{Pid: pid, StartTime: st, Group: group}, nil
}

// procStartTime reads field 22 (starttime) of /proc/pid/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	// comm (field 2) may contain spaces and parentheses: fields restart after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// killOrphan kills a machine process left by a dead controller if it still
// runs (same pid and same start time), and waits until it is gone.
func killOrphan(p Process) error {
	if p.Pid <= 0 {
		return nil
	}
	st, err := procStartTime(p.Pid)
	if err != nil || st != p.StartTime {
		return nil // gone, or the pid now belongs to another process
	}
	target := p.Pid
	if p.Group {
		target = -p.Pid
	}
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", target, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := procStartTime(p.Pid)
		if err != nil || st != p.StartTime {
			return nil
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z") {
				return nil // a zombie: dead, waiting for its (new) parent to reap it
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("process %d still runs after SIGKILL", p.Pid)
}
