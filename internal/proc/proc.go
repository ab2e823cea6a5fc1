// Package proc starts the host's child processes (qemu-system, qemu-img,
// vagrant, virsh, ssh, apt-get, mmdebstrap, mkfs, fsck, debugfs, go build)
// the one way matrixctl allows, so that none outlives its reason to run:
//
//   - each child leads its own process group, and the whole group is
//     SIGKILLed when the context ends (cmd.Cancel), not just the child;
//   - the kernel SIGKILLs the child when matrixctl dies (Pdeathsig);
//   - a child that is gone but whose grandchildren keep its output pipes
//     open is given WaitDelay, then its pipes are closed;
//   - every started child is reaped, also when nobody calls Wait;
//   - only a bounded tail of its output is kept, and a failure is one
//     error type, *Error, that names the command, its exit status and
//     the output tail, and unwraps to the cause.
//
// The guest agent (runner/agent) is PID 1 in the guest with its own reaper
// and does not use this package. A boundary test keeps os/exec out of every
// other package.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTail is how much captured output a child keeps unless Cmd.Tail says otherwise.
const DefaultTail = 16 << 10

// waitDelay is how long Wait waits for the output pipes after the child
// exited (a grandchild may hold them) before it closes them.
const waitDelay = 5 * time.Second

// Cmd describes one child process.
type Cmd struct {
	Argv []string
	Dir  string
	// Env is added to the inherited environment; a later entry wins.
	Env   []string
	Stdin io.Reader
	// Stdout and Stderr, when set, take that stream instead of the captured
	// output (an *os.File is handed to the child directly).
	Stdout io.Writer
	Stderr io.Writer
	// Out, when set, also receives the captured output as it arrives.
	Out io.Writer
	// Tail is how many bytes of captured output are kept (0: DefaultTail).
	Tail int
}

// LookPath finds an executable on PATH (exec.LookPath), so that callers need
// not import os/exec.
func LookPath(file string) (string, error) { return exec.LookPath(file) }

// Run runs c to completion and returns the tail of its captured output
// (stdout and stderr, less what Cmd.Stdout or Cmd.Stderr take). When ctx
// ends, the child's process group is SIGKILLed. Any failure (cannot start,
// nonzero exit, killed) is an *Error; the output is returned then too.
func Run(ctx context.Context, c Cmd) (string, error) {
	p, err := Start(ctx, c)
	if err != nil {
		return "", err
	}
	err = p.Wait()
	return p.Output(), err
}

// Output runs c to completion and returns its standard output in full, for a
// command whose output is parsed (like exec.Cmd.Output): only stderr is
// captured (and copied to Cmd.Out), and a failure's *Error carries its tail.
func Output(ctx context.Context, c Cmd) (string, error) {
	var stdout strings.Builder
	c.Stdout = &stdout
	_, err := Run(ctx, c)
	return stdout.String(), err
}

// Process is a started child. It is reaped as soon as it exits, whether or
// not Wait is called.
type Process struct {
	argv []string
	ctx  context.Context
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // set before done is closed
}

// Start starts c for a long-lived child (QEMU, an ssh forward): its process
// group is SIGKILLed when ctx ends (pass a context that never ends to decide
// the kill yourself with Kill). A child that cannot start is an *Error.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("proc: empty command")
	}
	n := c.Tail
	if n <= 0 {
		n = DefaultTail
	}
	p := &Process{argv: c.Argv, ctx: ctx, out: &tailBuffer{max: n}, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(cmd.Environ(), c.Env...)
	cmd.Stdin = c.Stdin
	var captured io.Writer = p.out
	if c.Out != nil {
		captured = io.MultiWriter(p.out, c.Out)
	}
	cmd.Stdout, cmd.Stderr = captured, captured
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if c.Stderr != nil {
		cmd.Stderr = c.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return nil, &Error{Argv: c.Argv, ExitCode: -1, Err: err}
	}
	p.cmd = cmd
	go p.reap()
	return p, nil
}

func (p *Process) reap() {
	err := p.cmd.Wait()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if p.ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", p.ctx.Err(), err)
		}
		p.err = &Error{Argv: p.argv, ExitCode: code, Output: p.out.String(), Err: err}
	}
	close(p.done)
}

// PID is the child's process id, which is also its process group id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the child has exited and been reaped; it returns nil or
// an *Error. It may be called any number of times.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Output is the tail of the captured output so far.
func (p *Process) Output() string { return p.out.String() }

// Signal sends sig to the child's whole process group; os.ErrProcessDone
// once the child has been reaped (its pid may belong to another process).
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return nil
}

// Kill SIGKILLs the child's process group; the reaper collects the child.
func (p *Process) Kill() error { return p.Signal(syscall.SIGKILL) }

func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Error is a child process that failed: it could not start, exited nonzero,
// or was killed.
type Error struct {
	Argv []string
	// ExitCode is the exit status, -1 when the child did not exit by itself
	// (killed by a signal, or never started).
	ExitCode int
	// Output is the tail of the captured output.
	Output string
	// Err is the cause: the start error or *exec.ExitError, wrapped in the
	// context's error when the context ended the child.
	Err error
}

// messageTail is how much of Output an error message shows.
const messageTail = 2000

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: exit %d: %v", displayArgv(e.Argv), e.ExitCode, e.Err)
	out := strings.TrimSpace(e.Output)
	if len(out) > messageTail {
		out = "..." + out[len(out)-messageTail:]
	}
	if out != "" {
		msg += "\n" + out
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Cause is the cause behind the *Error in err's chain (the start error, or
// the exit status wrapped in the context's error), for an error type that
// names the command and carries its output itself; other errors are
// returned as they are.
func Cause(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Quote joins argv as a POSIX shell reads it back.
func Quote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@+%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// displayArgv quotes argv for a message, folding more than two "-o Key=Value"
// pairs (apt-get passes dozens) into a count; Error.Argv keeps them all.
func displayArgv(argv []string) string {
	out := make([]string, 0, len(argv))
	folded := 0
	for i := 0; i < len(argv); i++ {
		if i > 0 && argv[i] == "-o" && i+1 < len(argv) {
			folded++
			i++
			continue
		}
		out = append(out, argv[i])
	}
	if folded <= 2 {
		return Quote(argv)
	}
	return strings.Join([]string{Quote(out[:1]), fmt.Sprintf("[%d -o options]", folded), Quote(out[1:])}, " ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return string(b)
}
