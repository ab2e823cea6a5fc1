package testutil

import (
	"fmt"
	"github.com/matrixctl/matrixctl/internal/proc"
	"os"
	"strings"
	"testing"
)

// RequireEnv names the capabilities a run must have: "all", or a comma list
// such as "root,qemu,docker,chromium,libvirt,vagrant" (a program's name, such
// as "cpio", names what RequiresBinary checks). A gate whose capability is
// required fails its test, naming what is missing, instead of skipping it: CI
// sets "all", so a machine that lost a package fails the run rather than
// passing it with fewer tests. Unset, every gate skips with its reason. The
// -short skip of Integration stays a skip either way.
const RequireEnv = "MATRIXCTL_REQUIRE"

// missing ends t because capability is unavailable, for the reason why: a
// skip, or a failure when RequireEnv requires the capability.
func missing(t testing.TB, capability, why string) {
	t.Helper()
	if v := os.Getenv(RequireEnv); required(v, capability) {
		t.Fatalf("%s=%s: needs %s: %s", RequireEnv, v, capability, why)
	}
	t.Skipf("needs %s: %s", capability, why)
}

// required reports whether the RequireEnv value v names capability.
func required(v, capability string) bool {
	for _, c := range strings.Split(v, ",") {
		if c = strings.TrimSpace(c); c == "all" || c == capability {
			return true
		}
	}
	return false
}

// lookPaths checks that the programs are on PATH, for capability.
func lookPaths(t testing.TB, capability string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := proc.LookPath(name); err != nil {
			missing(t, capability, err.Error())
		}
	}
}

// RequiresRoot skips t when not running as root (capability "root").
func RequiresRoot(t testing.TB) {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		missing(t, "root", fmt.Sprintf("running as uid %d", uid))
	}
}

// RequiresBinary skips t when a program is not on PATH; each program is
// its own capability, named as the program.
func RequiresBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		lookPaths(t, name, name)
	}
}

// RequiresQEMU skips t without qemu-system-x86_64 (capability "qemu").
func RequiresQEMU(t testing.TB) {
	t.Helper()
	lookPaths(t, "qemu", "qemu-system-x86_64")
}

// RequiresLibvirt skips t without libvirt's client and daemons (capability
// "libvirt"); tests start the daemons themselves when they are not running.
func RequiresLibvirt(t testing.TB) {
	t.Helper()
	lookPaths(t, "libvirt", "virsh", "libvirtd", "virtlogd")
}

// RequiresVagrant skips t without the vagrant program (capability "vagrant").
func RequiresVagrant(t testing.TB) {
	t.Helper()
	lookPaths(t, "vagrant", "vagrant")
}

// ChromiumEnv overrides the browser RequiresChromium looks for.
const ChromiumEnv = "MATRIXCTL_CHROMIUM"

// RequiresChromium returns the browser the report tests drive: Debian's
// chromium package (/usr/bin/chromium), or ChromiumEnv when set. It skips t
// when that program is missing (capability "chromium").
func RequiresChromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv(ChromiumEnv)
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := proc.LookPath(path); err != nil {
		missing(t, "chromium", err.Error())
	}
	return path
}

// RequiresDocker skips t when no Docker daemon answers (capability
// "docker"). err is what the caller's own client got trying to reach the
// daemon (nil: it answered); testutil stays free of the Docker client.
func RequiresDocker(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		missing(t, "docker", err.Error())
	}
}
