package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// systemPath leads every tool's PATH.
const systemPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// run runs a tool (apt-get, dpkg-deb, mmdebstrap, depmod, mkfs) through proc
// with the system's directories first on its PATH: the Debian tools call
// helpers by name (mmdebstrap runs python3 for every package it unpacks with
// path filters), and a version-manager shim earlier on PATH (pyenv) made that
// minutes slower and may lack the modules they import. Failures are *proc.Error.
func run(ctx context.Context, c proc.Cmd) (string, error) {
	c.Env = append([]string{"PATH=" + systemPath + ":" + os.Getenv("PATH")}, c.Env...)
	return proc.Run(ctx, c)
}

// runShowing is run that also writes every output line to progress (when
// set), prefixed by prefix.
func runShowing(ctx context.Context, c proc.Cmd, progress io.Writer, prefix string) (string, error) {
	if progress == nil {
		return run(ctx, c)
	}
	lw := &lineWriter{w: progress, prefix: prefix}
	c.Out = lw
	out, err := run(ctx, c)
	lw.flush()
	return out, err
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

// scanLines calls fn for each line of s.
func scanLines(s string, fn func(string)) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}
