package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

// Linux FIFREEZE/FITHAW ioctl numbers (_IOWR('X', 119/120, int)).
const (
	fiFreeze = 0xC0045877
	fiThaw   = 0xC0045878
)

func fsIoctl(path string, req uintptr) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, 0); e != 0 {
		return fmt.Errorf("ioctl %#x on %s: %w", req, path, e)
	}
	return nil
}

func (a *agent) cmdSysrq(c agentproto.Command) error {
	time.Sleep(100 * time.Millisecond) // let the reply leave first
	return os.WriteFile("/proc/sysrq-trigger", []byte(c.Arg), 0)
}

func (a *agent) cmdKillDockerd(agentproto.Command) error {
	if a.guest {
		return a.guestKillDockerd()
	}
	a.dockerMu.Lock()
	d := a.dockerd
	a.dockerMu.Unlock()
	if d == nil {
		return errors.New("dockerd is not running")
	}
	return d.cmd.Process.Signal(unix.SIGKILL)
}

func (a *agent) cmdSysctl(c agentproto.Command) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(c.Arg, ".", "/"))
	return os.WriteFile(path, []byte(c.Value+"\n"), 0)
}

// cmdWriteLoop starts a writer that rewrites and fsyncs 4 KiB blocks of
// c.Arg every 10 ms, for c.Value seconds (empty: until the machine stops);
// a writer that stops closes its file so the filesystem can be unmounted.
func (a *agent) cmdWriteLoop(c agentproto.Command) error {
	f, err := os.OpenFile(c.Arg, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var until time.Time
	if c.Value != "" {
		n, err := strconv.Atoi(c.Value)
		if err != nil {
			f.Close()
			return fmt.Errorf("write-loop duration %q: %w", c.Value, err)
		}
		until = time.Now().Add(time.Duration(n) * time.Second)
	}
	a.writers.Add(1)
	go func() {
		defer a.writers.Done()
		defer f.Close()
		buf := make([]byte, 4096)
		for i := 0; until.IsZero() || time.Now().Before(until); i++ {
			buf[0] = byte(i)
			f.WriteAt(buf, int64(i%256)*4096)
			f.Sync()
			select {
			case <-a.stopWriting:
				a.logf("write-loop on %s stopped for shutdown", c.Arg)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		a.logf("write-loop on %s ended", c.Arg)
	}()
	return nil
}

// stopWriters stops the fault-injection writers before a power-off: one
// still writing while the machine powers off fails its in-flight writes with
// I/O errors, which would be judged as damage of the cell. A writer blocked
// on a frozen fs cannot stop; the wait is bounded.
func (a *agent) stopWriters() {
	a.stopOnce.Do(func() { close(a.stopWriting) })
	done := make(chan struct{})
	go func() { a.writers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		a.logf("shutdown: a write-loop did not stop within 5s")
	}
}

func (a *agent) cmdShutdown(agentproto.Command) error {
	if a.guest {
		return a.guestShutdown()
	}
	a.send(agentproto.Message{Type: agentproto.TypeShutdown})
	a.stopWriters()
	a.dockerMu.Lock()
	d, cd := a.dockerd, a.containerd
	a.dockerMu.Unlock()
	for _, p := range []*started{d, cd} { // dockerd first: it still talks to containerd
		if p == nil {
			continue
		}
		p.cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-p.Exit:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Signal(unix.SIGKILL)
		}
	}
	unix.Sync()
	if a.scratchMount != "" {
		if err := unix.Unmount(a.scratchMount, 0); err != nil {
			a.logf("unmount %s: %v", a.scratchMount, err)
			unix.Unmount(a.scratchMount, unix.MNT_DETACH)
		}
	}
	unix.Sync()
	time.Sleep(100 * time.Millisecond) // let the shutdown message drain
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
