package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBisectUsageErrors(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(spec, []byte(`apiVersion: matrixctl/v1
kind: Matrix
axes:
  kernel:
    - version: "6.1"
      debian: {suite: bookworm}
  distro: [debian12]
  docker: [distro]
  driver: [overlay2, vfs]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--axis", "vagrant", "--good", "x"}, "--axis"},
		{[]string{"--axis", "docker", "--good", "x", "--driver", "overlay2", "--bad-verdict", "nope"}, "--bad-verdict"},
		{[]string{"--driver", "overlay2"}, "--good"},
		{[]string{"--good", "6.1.0-47", "--format", "yaml"}, "--format"},
		{[]string{"--good", "6.1.0-47", "--confidence", "2"}, "--confidence"},
		{[]string{"--good", "6.1.0-47", "--driver", "overlay2", "--bad-verdict", "boom"}, "--bad-verdict"},
		{[]string{"--good", "6.1.0-47"}, "exactly one runnable cell"},
		{[]string{"--good", "6.1.0-47", "--driver", "btrfs"}, "btrfs"},
		{[]string{"--resume", filepath.Join(t.TempDir(), "none")}, "--resume"},
	} {
		args := append([]string{"bisect", "-f", spec, "--cache", cache, "--out", filepath.Join(t.TempDir(), "b")}, tc.args...)
		code, _, errOut := run(t, args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want %d naming %q", tc.args, code, errOut, ExitUsage, tc.want)
		}
	}
}

func TestKernelPackageName(t *testing.T) {
	for in, want := range map[string]string{
		"6.1.0-47":                   "linux-image-6.1.0-47-amd64",
		"linux-image-6.1.0-47-amd64": "linux-image-6.1.0-47-amd64",
	} {
		if got := kernelPackageName(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
