package images

import (
	"bufio"
	"bytes"
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

// systemPath leads every child's PATH.
const systemPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// outputTail is how much of a child's combined output an ExecError keeps.
const outputTail = 16 << 10

// ExecError is a child process (apt-get, dpkg-deb, mmdebstrap, depmod, mkfs)
// that failed: its argv, exit code (-1 when it did not exit normally) and the
// tail of its combined output.
type ExecError struct {
	Argv     []string
	ExitCode int
	Output   string
	Err      error
}

func (e *ExecError) Error() string {
	tail := strings.TrimSpace(e.Output)
	if i := strings.LastIndexByte(tail, '\n'); len(tail) > 2000 && i >= 0 {
		tail = "..." + tail[len(tail)-2000:]
	}
	msg := fmt.Sprintf("%s: exit %d: %v", shortArgv(e.Argv), e.ExitCode, e.Err)
	if tail != "" {
		msg += "\n" + tail
	}
	return msg
}

func (e *ExecError) Unwrap() error { return e.Err }

// command describes one child process run by run.
type command struct {
	argv []string
	dir  string
	env  []string // appended to the environment
	// progress, when set, receives every output line prefixed by prefix.
	progress io.Writer
	prefix   string
	stdout   io.Writer // when set, stdout goes here instead of the captured output
}

// tailBuffer keeps the last outputTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*outputTail {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-outputTail:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > outputTail {
		b = b[len(b)-outputTail:]
	}
	return string(b)
}

// lineWriter forwards complete lines, prefixed, to w.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	part   []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexAny(l.part, "\r\n")
		if i < 0 {
			break
		}
		line := bytes.TrimSpace(l.part[:i])
		l.part = l.part[i+1:]
		if len(line) > 0 {
			fmt.Fprintf(l.w, "%s%s\n", l.prefix, line)
		}
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if line := bytes.TrimSpace(l.part); len(line) > 0 {
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, line)
	}
	l.part = nil
}

// run starts c in its own process group that dies with us (Pdeathsig) and is
// SIGKILLed as a whole when ctx ends; it always reaps the child. It returns
// the captured output (stdout and stderr, unless c.stdout takes stdout).
func run(ctx context.Context, c command) (string, error) {
	if len(c.argv) == 0 {
		return "", errors.New("run: empty command")
	}
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Dir = c.dir
	// The system's directories first: the Debian tools call helpers by name
	// (mmdebstrap runs python3 for every package it unpacks with path
	// filters), and a version-manager shim earlier on PATH (pyenv) made that
	// minutes slower and may lack the modules they import.
	env := append(cmd.Environ(), "PATH="+systemPath+":"+os.Getenv("PATH"))
	cmd.Env = append(env, c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out := &tailBuffer{}
	var sink io.Writer = out
	var lw *lineWriter
	if c.progress != nil {
		lw = &lineWriter{w: c.progress, prefix: c.prefix}
		sink = io.MultiWriter(out, lw)
	}
	cmd.Stdout, cmd.Stderr = sink, sink
	if c.stdout != nil {
		cmd.Stdout = c.stdout
	}
	err := cmd.Run()
	if lw != nil {
		lw.flush()
	}
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return out.String(), &ExecError{Argv: c.argv, ExitCode: code, Output: out.String(), Err: err}
	}
	return out.String(), nil
}

// scanLines calls fn for each line of s.
func scanLines(s string, fn func(string)) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}

// shortArgv joins argv for a message, folding apt's many "-o Key=Value"
// pairs (they are in ExecError.Argv in full).
func shortArgv(argv []string) string {
	var out []string
	folded := 0
	for i := 0; i < len(argv); i++ {
		if argv[i] == "-o" && i+1 < len(argv) {
			folded++
			i++
			continue
		}
		out = append(out, argv[i])
	}
	if folded > 2 {
		out = append(out[:1], append([]string{fmt.Sprintf("[%d -o options]", folded)}, out[1:]...)...)
		return strings.Join(out, " ")
	}
	return strings.Join(argv, " ")
}
