package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper is PID 1's child reaper: it reaps every child (orphaned container
// shims included) and hands the exit status of the ones the agent started to
// whoever waits for them. The agent never calls exec.Cmd.Wait.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
	exited  map[int]unix.WaitStatus // reaped before anyone asked
}

func newReaper() *reaper {
	r := &reaper{waiting: map[int]chan unix.WaitStatus{}, exited: map[int]unix.WaitStatus{}}
	go r.loop()
	return r
}

func (r *reaper) loop() {
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGCHLD)
	tick := time.NewTicker(time.Second)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			r.deliver(pid, ws)
		}
		select {
		case <-sigc:
		case <-tick.C:
		}
	}
}

func (r *reaper) deliver(pid int, ws unix.WaitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.waiting[pid]; ok {
		delete(r.waiting, pid)
		c <- ws
		return
	}
	if len(r.exited) < 4096 { // orphans nobody waits for must not grow this forever
		r.exited[pid] = ws
	}
}

// watch returns a channel that receives pid's exit status once.
func (r *reaper) watch(pid int) <-chan unix.WaitStatus {
	c := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		c <- ws
		return c
	}
	r.waiting[pid] = c
	return c
}

const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// started is a child the agent launched; Exit delivers its status.
type started struct {
	cmd  *exec.Cmd
	Exit <-chan unix.WaitStatus
}

// start launches argv with stdout+stderr going to out (nil: discarded).
func (a *agent) spawn(out *os.File, argv ...string) (*started, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + systemPath, "HOME=/root", "LANG=C"}
	cmd.Dir = "/"
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	// Hold the reaper's lock across Start so the child cannot be reaped
	// into the orphan map before we register for it.
	a.reaper.mu.Lock()
	err := cmd.Start()
	if err != nil {
		a.reaper.mu.Unlock()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c := make(chan unix.WaitStatus, 1)
	a.reaper.waiting[cmd.Process.Pid] = c
	a.reaper.mu.Unlock()
	return &started{cmd: cmd, Exit: c}, nil
}

// RunError is a failed command with its output.
type RunError struct {
	Argv   []string
	Status string
	Output string
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%s: %s: %s", strings.Join(e.Argv, " "), e.Status, e.Output)
}

// run runs argv to completion (bounded by timeout) and returns its combined output.
func (a *agent) runCmd(timeout time.Duration, argv ...string) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("run %s: %w", argv[0], err)
	}
	defer r.Close()
	s, err := a.spawn(w, argv...)
	w.Close()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&buf, io.LimitReader(r, 1<<20)); io.Copy(io.Discard, r); close(copied) }()
	var ws unix.WaitStatus
	select {
	case ws = <-s.Exit:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		ws = <-s.Exit
	}
	select {
	case <-copied:
	case <-time.After(2 * time.Second): // a grandchild may hold the pipe open
	}
	out := strings.TrimSpace(buf.String())
	if ws.Exited() && ws.ExitStatus() == 0 {
		return out, nil
	}
	return out, &RunError{Argv: argv, Status: statusString(ws), Output: out}
}

func statusString(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws))
	}
}
