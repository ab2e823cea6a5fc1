// Package selfbuild finds the project's own helper programs (the guest agent,
// the probe binary) as static executables: from an environment override, from
// beside the running matrixctl binary (where `make build` puts them), or, in
// a source checkout, by building them with the Go toolchain.
//
// Environment variables read:
//
//	MATRIXCTL_<NAME>_BIN   path to a prebuilt binary, e.g. MATRIXCTL_AGENT_BIN
package selfbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// Program is one of the project's helper programs.
type Program struct {
	// Name is the binary's file name, e.g. "matrixctl-agent".
	Name string
	// Package is the Go import path of its main package.
	Package string
	// Env is the environment variable that overrides its path.
	Env string
}

// The helper programs matrixctl ships.
var (
	Agent = Program{Name: "matrixctl-agent", Package: "github.com/matrixctl/matrixctl/runner/agent", Env: "MATRIXCTL_AGENT_BIN"}
	Probe = Program{Name: "matrixctl-probe", Package: "github.com/matrixctl/matrixctl/probes/cmd/matrixctl-probe", Env: "MATRIXCTL_PROBE_BIN"}
)

// built remembers what this process already built, so a run builds each program once.
var built sync.Map // Program.Name -> string

// Path returns a static executable for p. When it has to build one, it writes
// it under dir (created if needed).
func Path(ctx context.Context, p Program, dir string) (string, error) {
	if v := os.Getenv(p.Env); v != "" {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("%s=%s: %w", p.Env, v, err)
		}
		return v, nil
	}
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), p.Name)
		if st, err := os.Stat(beside); err == nil && st.Mode().IsRegular() {
			return beside, nil
		}
	}
	// A build of this process is reused while it exists: the directory it
	// went to may be gone since (a test's temporary cache, a pruned cache).
	if v, ok := built.Load(p.Name); ok {
		if _, err := os.Stat(v.(string)); err == nil {
			return v.(string), nil
		}
		built.Delete(p.Name)
	}
	path, err := build(ctx, p, dir)
	if err != nil {
		return "", err
	}
	built.Store(p.Name, path)
	return path, nil
}

// build compiles p with the Go toolchain from the module source that contains
// the current working directory (tests) or the running binary.
func build(ctx context.Context, p Program, dir string) (string, error) {
	goBin, err := proc.LookPath("go")
	if err != nil {
		if _, statErr := os.Stat("/usr/local/go/bin/go"); statErr != nil {
			return "", fmt.Errorf("%s not found beside matrixctl and no Go toolchain to build it (set %s or run make build): %w", p.Name, p.Env, err)
		}
		goBin = "/usr/local/go/bin/go"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", p.Name, err)
	}
	tmp, err := os.CreateTemp(dir, p.Name+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", p.Name, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	out, err := proc.Run(ctx, proc.Cmd{Argv: []string{goBin, "build", "-trimpath", "-o", tmp.Name(), p.Package}, Env: []string{"CGO_ENABLED=0"}})
	if err != nil {
		return "", &BuildError{Program: p.Name, Env: p.Env, Output: strings.TrimSpace(out), Err: proc.Cause(err)}
	}
	final := filepath.Join(dir, p.Name)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("build %s: %w", p.Name, err)
	}
	return final, nil
}

// BuildError carries the Go toolchain's output.
type BuildError struct {
	Program string
	Env     string
	Output  string
	Err     error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("%s is not beside matrixctl and %s is unset, and building it from source failed "+
		"(run `make build`, which puts it in bin/ beside matrixctl): %v: %s", e.Program, e.Env, e.Err, e.Output)
}

func (e *BuildError) Unwrap() error { return e.Err }
