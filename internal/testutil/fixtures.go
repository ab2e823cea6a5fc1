package testutil

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// LogWriter returns a writer that sends what is written to t.Log, one call
// per write, without the trailing newline: progress and subprocess output
// show up under the test that produced it.
func LogWriter(t testing.TB) io.Writer { return logWriter{t} }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// SmallSpec is the small real matrix the VM suites run: Debian's 6.1 kernel,
// Debian 12 with its own docker.io, overlay2, a short soak on a small VM.
// The zero value is that one cell with the io probe; the fields are what
// the suites vary. YAML renders it as a matrixctl/v1 file for matrix.Parse.
type SmallSpec struct {
	Kernel  string   // the 6.1 kernel's source, a YAML key: value; "" = debian: {suite: bookworm}
	Include []string // include rows, YAML flow maps
	Probes  string   // YAML list; "" = [io]
	Soak    string   // "" = 3s
	Timeout string   // "" = 15m
	CPUs    int      // 0 = 1
	Memory  int      // MiB; 0 = 1024
	Init    string   // the init setting; "" = none (the default init)
}

// YAML is the spec as a matrix file.
func (s SmallSpec) YAML() string {
	var b strings.Builder
	b.WriteString("apiVersion: matrixctl/v1\nkind: Matrix\naxes:\n  kernel:\n    - version: \"6.1\"\n")
	fmt.Fprintf(&b, "      %s\n", or(s.Kernel, "debian: {suite: bookworm}"))
	b.WriteString("  distro: [debian12]\n  docker: [distro]\n  driver: [overlay2]\n")
	if len(s.Include) > 0 {
		b.WriteString("include:\n")
		for _, row := range s.Include {
			fmt.Fprintf(&b, "  - %s\n", row)
		}
	}
	fmt.Fprintf(&b, "probes: %s\nsoak: %s\ntimeout: %s\n", or(s.Probes, "[io]"), or(s.Soak, "3s"), or(s.Timeout, "15m"))
	if s.Init != "" {
		fmt.Fprintf(&b, "init: %s\n", s.Init)
	}
	fmt.Fprintf(&b, "vm:\n  cpus: %d\n  memory: %d\n", orInt(s.CPUs, 1), orInt(s.Memory, 1024))
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}
