package fscheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// Debugfs runs one read-only debugfs request (e.g. "cat /path") on an ext4
// image and returns its standard output. debugfs reports a missing file on
// stderr with exit 0, so any stderr line other than its banner is an error.
func Debugfs(ctx context.Context, image, request string) ([]byte, error) {
	args := []string{"-R", request, image}
	var stdout bytes.Buffer
	stderr, err := proc.Run(ctx, proc.Cmd{Argv: append([]string{"debugfs"}, args...), Env: []string{"LC_ALL=C"}, Stdout: &stdout, Tail: 2 * maxOutput})
	var complaints []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			complaints = append(complaints, l)
		}
	}
	if err == nil && len(complaints) > 0 {
		err = errors.New(strings.Join(complaints, "; "))
	}
	if err != nil {
		return nil, &ToolError{Tool: "debugfs", Args: args, ExitCode: exitCode(err), Output: tailBytes(stderr, maxOutput), Err: proc.Cause(err)}
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

// exitCode is the exit status behind err, -1 when the tool did not exit by
// itself (killed, not found).
func exitCode(err error) int {
	var pe *proc.Error
	if errors.As(err, &pe) {
		return pe.ExitCode
	}
	return -1
}
