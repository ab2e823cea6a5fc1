package testutil

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how a gate ended the test: Skip and Fatal end the calling
// goroutine, as they do in a real test.
type fakeTB struct {
	testing.TB
	ended string // "skip", "fatal" or "" (the gate passed)
	msg   string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.ended, f.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.ended, f.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// gate runs g against a fake test and returns how it ended.
func gate(g func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g(f)
	}()
	<-done
	return f
}

func TestGateSkipsUnlessRequired(t *testing.T) {
	noChromium := filepath.Join(t.TempDir(), "chromium")
	t.Setenv(ChromiumEnv, noChromium)
	chromium := func(tb testing.TB) { RequiresChromium(tb) }
	for _, tc := range []struct {
		require string
		ended   string
		msg     string
	}{
		{"", "skip", "needs chromium: exec: " + fmt.Sprintf("%q", noChromium) + ": "},
		{"all", "fatal", "MATRIXCTL_REQUIRE=all: needs chromium: exec: "},
		{"root, chromium", "fatal", "MATRIXCTL_REQUIRE=root, chromium: needs chromium: "},
		{"root,docker", "skip", "needs chromium: "},
		{"chromium-browser", "skip", "needs chromium: "},
	} {
		t.Setenv(RequireEnv, tc.require)
		f := gate(chromium)
		if f.ended != tc.ended || !strings.HasPrefix(f.msg, tc.msg) {
			t.Errorf("%s=%q: ended %q with %q; want %q with %q…", RequireEnv, tc.require, f.ended, f.msg, tc.ended, tc.msg)
		}
	}
}

func TestGatesNameTheirCapability(t *testing.T) {
	t.Setenv(RequireEnv, "all")
	t.Setenv("PATH", t.TempDir())
	t.Setenv(ChromiumEnv, filepath.Join(t.TempDir(), "chromium"))
	for _, tc := range []struct {
		capability string
		gate       func(testing.TB)
	}{
		{"qemu", RequiresQEMU},
		{"libvirt", RequiresLibvirt},
		{"vagrant", RequiresVagrant},
		{"chromium", func(tb testing.TB) { RequiresChromium(tb) }},
		{"docker", func(tb testing.TB) {
			RequiresDocker(tb, errors.New("dial unix /var/run/docker.sock: connect: no such file or directory"))
		}},
		{"cpio", func(tb testing.TB) { RequiresBinary(tb, "cpio") }},
	} {
		f := gate(tc.gate)
		if want := "MATRIXCTL_REQUIRE=all: needs " + tc.capability + ": "; f.ended != "fatal" || !strings.HasPrefix(f.msg, want) {
			t.Errorf("%s: ended %q with %q; want fatal with %q…", tc.capability, f.ended, f.msg, want)
		}
	}
}

func TestGatesPass(t *testing.T) {
	t.Setenv(RequireEnv, "all")
	t.Setenv(ChromiumEnv, "sh")
	for name, g := range map[string]func(testing.TB){
		"binary":   func(tb testing.TB) { RequiresBinary(tb, "sh") },
		"docker":   func(tb testing.TB) { RequiresDocker(tb, nil) },
		"chromium": func(tb testing.TB) { RequiresChromium(tb) },
	} {
		if f := gate(g); f.ended != "" {
			t.Errorf("%s: ended %q with %q, want it to pass", name, f.ended, f.msg)
		}
	}
}

func TestRequiresRootNamesUID(t *testing.T) {
	t.Setenv(RequireEnv, "root")
	f := gate(RequiresRoot)
	if f.ended == "" {
		return // running as root
	}
	if f.ended != "fatal" || !strings.HasPrefix(f.msg, "MATRIXCTL_REQUIRE=root: needs root: running as uid ") {
		t.Errorf("ended %q with %q", f.ended, f.msg)
	}
}

func TestSmallSpecDefaults(t *testing.T) {
	got := SmallSpec{}.YAML()
	for _, want := range []string{"apiVersion: matrixctl/v1\n", "      debian: {suite: bookworm}\n", "driver: [overlay2]\n", "probes: [io]\nsoak: 3s\ntimeout: 15m\n", "vm:\n  cpus: 1\n  memory: 1024\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "include:") {
		t.Errorf("include without rows:\n%s", got)
	}
}
