package fscheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Debugfs runs one read-only debugfs request (e.g. "cat /path") on an ext4
// image and returns its standard output. debugfs reports a missing file on
// stderr with exit 0, so any stderr line other than its banner is an error.
func Debugfs(ctx context.Context, image, request string) ([]byte, error) {
	args := []string{"-R", request, image}
	path, err := exec.LookPath("debugfs")
	if err != nil {
		return nil, &ToolError{Tool: "debugfs", Args: args, ExitCode: -1, Err: err}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var complaints []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			complaints = append(complaints, l)
		}
	}
	if err == nil && len(complaints) > 0 {
		err = errors.New(strings.Join(complaints, "; "))
	}
	if err != nil {
		return nil, &ToolError{Tool: "debugfs", Args: args, ExitCode: exitCode(err), Output: tailBytes(stderr.String(), maxOutput), Err: err}
	}
	return stdout.Bytes(), nil
}

// ParseBmap reads debugfs "bmap" output: one physical block number. A
// hole (0) is an error.
func ParseBmap(out []byte) (int64, error) {
	s := strings.TrimSpace(string(out))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("debugfs bmap: %q is not a physical block number", s)
	}
	return n, nil
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
