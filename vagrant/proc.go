package vagrant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ExecError is a failed command with its argv, exit code and output tail.
type ExecError struct {
	Argv     []string
	ExitCode int
	Output   string
	Err      error
}

func (e *ExecError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return fmt.Sprintf("%s: exit %d: %v\n%s", strings.Join(e.Argv, " "), e.ExitCode, e.Err, out)
}

func (e *ExecError) Unwrap() error { return e.Err }

// Cmd is one command run by Run.
type Cmd struct {
	Argv []string
	Dir  string
	Env  []string // added to the environment
	// Out also receives stdout and stderr live (may be nil).
	Out   io.Writer
	Stdin io.Reader
}

// Command builds the *exec.Cmd for c: its own process group, SIGKILLed as a
// whole when ctx ends, and killed with the controller (Pdeathsig).
func Command(ctx context.Context, c Cmd) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(cmd.Environ(), c.Env...)
	cmd.Stdin = c.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs c to completion and returns its combined output; failures are
// *ExecError.
func Run(ctx context.Context, c Cmd) (string, error) {
	if len(c.Argv) == 0 {
		return "", errors.New("run: empty command")
	}
	cmd := Command(ctx, c)
	var buf bytes.Buffer
	var w io.Writer = &buf
	if c.Out != nil {
		w = io.MultiWriter(&buf, c.Out)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return buf.String(), &ExecError{Argv: c.Argv, ExitCode: code, Output: buf.String(), Err: err}
	}
	return buf.String(), nil
}
