package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// Exit codes a CI job can rely on.
const (
	ExitOK      = 0 // every runnable cell passed (or the command succeeded)
	ExitFailed  = 1 // some cell failed
	ExitUsage   = 2 // usage or spec error
	ExitInfra   = 3 // infrastructure error
	ExitAborted = 130
)

// Streams are the command's standard streams, injected so tests can capture them.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// globalFlags are shared by every command.
type globalFlags struct {
	File    string
	Out     string
	Cache   string
	Verbose bool
}

// exitError carries an exit code up to Main; its message is printed once.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit attaches an exit code to err.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageErrorf reports bad input (flags, spec) with exit code 2.
func usageErrorf(format string, args ...any) error {
	return withExit(ExitUsage, fmt.Errorf(format, args...))
}

// Main runs matrixctl with args and returns the process exit code.
func Main(ctx context.Context, streams Streams, args []string) int {
	root := newRootCommand(streams)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var silent *silentExit
	if errors.As(err, &silent) {
		return silent.code
	}
	fmt.Fprintf(streams.ErrOut, "matrixctl: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Errors from cobra's own flag and argument parsing are usage errors.
	return ExitUsage
}

// silentExit ends the command with a code after it already printed its outcome.
type silentExit struct{ code int }

func (e *silentExit) Error() string { return fmt.Sprintf("exit %d", e.code) }

func defaultCacheDir() string {
	if dir := os.Getenv("MATRIXCTL_CACHE"); dir != "" {
		return dir
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "matrixctl-cache")
	}
	return filepath.Join(dir, "matrixctl")
}

func newRootCommand(streams Streams) *cobra.Command {
	g := &globalFlags{}
	cmd := &cobra.Command{
		Use:   "matrixctl",
		Short: "find the kernel × distro × docker × storage-driver combinations you can trust",
		Long: `matrixctl boots every kernel × distro × Docker version × storage driver combination of a
matrix in its own VM, loads it with IO-, network- and churn-heavy containers, watches the
serial console for kernel panics and filesystem damage, verifies the data it wrote and
ranks the combinations.`,
		Example: `  # what would run, and what cannot and why
  matrixctl plan

  # qualify the aufs cells of kernel 3.16 only
  matrixctl run --kernel 3.16 --driver aufs

  # analyse a saved serial console log
  matrixctl console console.log`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().StringVarP(&g.File, "file", "f", "matrix.yaml", "matrix spec file")
	cmd.PersistentFlags().StringVar(&g.Out, "out", "results", "results directory")
	cmd.PersistentFlags().StringVar(&g.Cache, "cache", defaultCacheDir(), "cache for downloaded and built artifacts (env MATRIXCTL_CACHE)")
	cmd.PersistentFlags().BoolVarP(&g.Verbose, "verbose", "v", false, "print more detail, including failing subprocess output")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return withExit(ExitUsage, err)
	})
	for _, add := range subcommands {
		cmd.AddCommand(add(g, streams))
	}
	return cmd
}
