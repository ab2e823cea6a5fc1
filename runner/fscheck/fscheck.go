// Package fscheck verifies a stopped guest's scratch disk image from the host
// with the filesystem's own checker in its read-only mode: e2fsck -fn,
// xfs_repair -n, btrfs check --readonly (plus --check-data-csum), and
// thin_check for devicemapper thin-pool metadata (at the disk's start, or in
// an LVM thin pool's metadata volume). It never modifies the image.
package fscheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/proc"
)

// maxOutput bounds the checker output kept in results (the tail is kept).
const maxOutput = 256 << 10

// tool describes how to run one filesystem's checker and read its exit code.
type tool struct {
	name string
	args func(image string) []string
	// judge reads an exit code: clean, or dirty; ok=false means an
	// operational failure of the tool.
	judge func(code int) (clean, ok bool)
	// extract, if set, copies what the tool checks out of the image into a
	// file of its own (removed after the check) and returns its path.
	extract func(image string) (string, error)
}

// exact judges tools whose exit code is 0 for clean and one of dirty for errors found.
func exact(dirty ...int) func(int) (bool, bool) {
	return func(code int) (bool, bool) {
		if code == 0 {
			return true, true
		}
		for _, d := range dirty {
			if code == d {
				return false, true
			}
		}
		return false, false
	}
}

// e2fsckJudge reads e2fsck's bit mask: 4 (errors left uncorrected) wins even
// when 8 (operational error) is set too, e.g. "journal superblock is corrupt
// ... cannot proceed" exits 12; 1 and 2 ("corrected") cannot happen with -n
// and say something was wrong; 8, 16, 32, 128 alone are operational.
func e2fsckJudge(code int) (bool, bool) {
	switch {
	case code == 0:
		return true, true
	case code&4 != 0:
		return false, true
	case code&(8|16|32|128) != 0:
		return false, false
	default: // 1, 2, 3
		return false, true
	}
}

// tools maps a filesystem type to its checker.
var tools = map[string]tool{
	// e2fsck: see e2fsckJudge.
	"ext4": {name: "e2fsck", args: func(img string) []string { return []string{"-f", "-n", img} }, judge: e2fsckJudge},
	"ext3": {name: "e2fsck", args: func(img string) []string { return []string{"-f", "-n", img} }, judge: e2fsckJudge},
	"ext2": {name: "e2fsck", args: func(img string) []string { return []string{"-f", "-n", img} }, judge: e2fsckJudge},
	// xfs_repair -n: 0 clean, 1 corruption found; 2 a dirty log (after a
	// clean shutdown that is itself wrong, so it counts as not clean).
	"xfs": {name: "xfs_repair", args: func(img string) []string { return []string{"-n", "-f", img} }, judge: exact(1, 2)},
	// btrfs check: 0 clean, 1 errors (metadata or data checksums).
	"btrfs": {name: "btrfs", args: func(img string) []string {
		return []string{"check", "--readonly", "--check-data-csum", img}
	}, judge: exact(1)},
	// thin_check on a thin pool's metadata device: 0 clean, 1 errors.
	"thin": {name: "thin_check", args: func(img string) []string { return []string{img} }, judge: exact(1)},
	// lvm-thin: the same, on the metadata LV of an LVM thin pool, copied
	// out of the physical volume (lvm.go).
	"lvm-thin": {name: "thin_check", args: func(img string) []string { return []string{img} }, judge: exact(1), extract: extractLVMThinMeta},
}

// extractLVMThinMeta copies the thin pool metadata LV out of image, beside it.
func extractLVMThinMeta(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	exts, err := lvmThinMeta(f)
	f.Close()
	if err != nil {
		return "", err
	}
	return copyExtents(image, exts, filepath.Dir(image))
}

// Supported reports whether fs has a checker.
func Supported(fs string) bool {
	_, ok := tools[fs]
	return ok
}

// ToolError is an operational failure of a checker: it could not run, or
// it ended with an exit code that says neither clean nor dirty.
type ToolError struct {
	Tool     string
	Args     []string
	ExitCode int
	Output   string
	Err      error
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("%s %s: exit %d: %v: %s", e.Tool, strings.Join(e.Args, " "), e.ExitCode, e.Err, lastLines(e.Output, 5))
}

func (e *ToolError) Unwrap() error { return e.Err }

// Check runs fs's checker on image read-only and returns its typed result.
// An error means the check itself failed (unknown fs, missing tool, an
// operational exit code), not that the filesystem is damaged.
func Check(ctx context.Context, image, fs string) (*results.Checker, error) {
	t, ok := tools[fs]
	if !ok {
		return nil, fmt.Errorf("check %s: no checker for filesystem %q", image, fs)
	}
	if _, err := os.Stat(image); err != nil {
		return nil, fmt.Errorf("check %s: %w", image, err)
	}
	input := image
	if t.extract != nil {
		p, err := t.extract(image)
		if err != nil {
			return nil, &ToolError{Tool: t.name, Args: t.args(image), ExitCode: -1, Err: fmt.Errorf("find what to check in %s: %w", image, err)}
		}
		defer os.Remove(p)
		input = p
	}
	args := t.args(input)
	// Twice maxOutput, so that tailBytes marks a cut.
	out, err := proc.Run(ctx, proc.Cmd{Argv: append([]string{t.name}, args...), Env: []string{"LC_ALL=C"}, Tail: 2 * maxOutput})
	output := tailBytes(out, maxOutput)
	code := 0
	var pe *proc.Error
	switch {
	case err == nil:
	case errors.As(err, &pe) && pe.ExitCode >= 0 && ctx.Err() == nil:
		code = pe.ExitCode
	default:
		return nil, &ToolError{Tool: t.name, Args: args, ExitCode: -1, Output: output, Err: proc.Cause(err)}
	}
	res := &results.Checker{Tool: t.name, Args: args, ExitCode: code, Output: output}
	clean, ok := t.judge(code)
	if !ok {
		return nil, &ToolError{Tool: t.name, Args: args, ExitCode: code, Output: output, Err: errors.New("unexpected exit code")}
	}
	res.Clean = clean
	return res, nil
}

func tailBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[... output cut ...]\n" + s[len(s)-n:]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
