package runner

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/kconfig"
	"github.com/matrixctl/matrixctl/matrix"
)

// fakeKernel writes a kernel config with every symbol of the preflight
// table set (tristates as modules, with their .ko in a module tree), minus
// drop, plus extra lines.
func fakeKernel(t *testing.T, drop []string, extra ...string) KernelFiles {
	t.Helper()
	dir := t.TempDir()
	mods := filepath.Join(dir, "lib", "modules", "6.1.0-test")
	if err := os.MkdirAll(filepath.Join(mods, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	for _, r := range kconfig.Table() {
		for _, s := range r.Symbols {
			switch {
			case s.Config == "CONFIG_AUFS_FS" || s.Config == "CONFIG_ZFS" || slices.Contains(drop, s.Config):
			case s.Module != "":
				cfg.WriteString(s.Config + "=m\n")
				if err := os.WriteFile(filepath.Join(mods, "kernel", s.Module+".ko"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			default:
				cfg.WriteString(s.Config + "=y\n")
			}
		}
	}
	for _, l := range extra {
		cfg.WriteString(l + "\n")
	}
	config := filepath.Join(dir, "config")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return KernelFiles{Release: "6.1.0-test", Config: config, ModulesDir: mods}
}

// aufsCheck is the pending kernel check the built-in rules give an aufs cell.
func aufsCheck(t *testing.T) matrix.KernelCheck {
	for _, r := range matrix.BuiltinRules() {
		if r.Check != nil && len(r.Drivers) == 1 && r.Drivers[0] == "aufs" {
			return *r.Check
		}
	}
	t.Fatal("no aufs kernel check in the built-in rules")
	return matrix.KernelCheck{}
}

func TestKernelPreflight(t *testing.T) {
	cell := func(driver, suite string, pending ...matrix.KernelCheck) matrix.Cell {
		c := testCell("c")
		c.Driver, c.Distro.Suite, c.Pending = driver, suite, pending
		c.Settings.Init = matrix.InitSystemd
		return c
	}
	tests := []struct {
		name        string
		cell        matrix.Cell
		kernel      KernelFiles
		unsupported string // the whole reason
		warning     string // substring of the one warning's title
	}{
		{name: "ok", cell: cell("overlay2", "bookworm"), kernel: fakeKernel(t, nil)},
		{name: "aufs keeps the rule's reason", cell: cell("aufs", "bullseye", aufsCheck(t)), kernel: fakeKernel(t, nil, "# CONFIG_AUFS_FS is not set"),
			unsupported: "kernel 6.1.0-test: the kernel has no aufs (CONFIG_AUFS_FS, module aufs): aufs is not in mainline and needs an AUFS-patched kernel"},
		{name: "no veth", cell: cell("overlay2", "bookworm"), kernel: fakeKernel(t, []string{"CONFIG_VETH"}),
			unsupported: "kernel 6.1.0-test: container networking (veth pairs on a bridge, filtered by iptables) needs CONFIG_VETH, CONFIG_BRIDGE, CONFIG_BRIDGE_NETFILTER: " +
				"CONFIG_VETH is not in the config [moby contrib/check-config.sh § Generally Necessary, https://github.com/moby/moby/blob/master/contrib/check-config.sh]"},
		{name: "no seccomp filter: a warning", cell: cell("overlay2", "bookworm"), kernel: fakeKernel(t, []string{"CONFIG_SECCOMP_FILTER"}),
			warning: "kernel 6.1.0-test: seccomp profiles (dockerd runs containers unconfined without them) needs CONFIG_SECCOMP, CONFIG_SECCOMP_FILTER: CONFIG_SECCOMP_FILTER is not in the config"},
		{name: "bullseye boots cgroup v2: needs BPF", cell: cell("overlay2", "bullseye"), kernel: fakeKernel(t, []string{"CONFIG_CGROUP_BPF"}),
			unsupported: "kernel 6.1.0-test: cgroup v2 device control (a BPF program per cgroup) needs CONFIG_CGROUP_BPF: CONFIG_CGROUP_BPF is not in the config [Linux kernel docs: Control Group v2 § Device controller, https://docs.kernel.org/admin-guide/cgroup-v2.html#device-controller]"},
		{name: "the agent mounts cgroup v1: no BPF needed", cell: func() matrix.Cell {
			c := cell("overlay2", "bullseye")
			c.Settings.Init = matrix.InitAgent
			return c
		}(), kernel: fakeKernel(t, []string{"CONFIG_CGROUP_BPF"})},
		{name: "buster boots cgroup v1: does not", cell: cell("overlay2", "buster"), kernel: fakeKernel(t, []string{"CONFIG_CGROUP_BPF"})},
		{name: "no config: pending checks on modules, one warning", cell: cell("aufs", "bullseye", aufsCheck(t)),
			kernel:  KernelFiles{Release: "3.16.0-local", ModulesDir: filepath.Join(t.TempDir(), "aufs.ko")},
			warning: "kernel 3.16.0-local: no config file beside the kernel: its kernel requirements were not checked"},
	}
	// The local kernel's tree has an aufs module.
	if err := os.MkdirAll(tests[len(tests)-1].kernel.ModulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tests[len(tests)-1].kernel.ModulesDir, "aufs.ko"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ReadKernel(tc.kernel)
			if err != nil {
				t.Fatal(err)
			}
			warnings, err := KernelPreflight(tc.cell, k)
			var u *UnsupportedError
			switch {
			case tc.unsupported != "" && (!errors.As(err, &u) || u.Reason != tc.unsupported):
				t.Errorf("err %v\nwant unsupported: %s", err, tc.unsupported)
			case tc.unsupported == "" && err != nil:
				t.Errorf("err %v", err)
			}
			switch {
			case tc.warning == "" && len(warnings) > 0:
				t.Errorf("warnings %v, want none", warnings)
			case tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0].Title, tc.warning) ||
				warnings[0].Category != results.CatKernelConfig || warnings[0].Severity != results.SevWarning):
				t.Errorf("warnings %+v\nwant one kernel-config warning: %s", warnings, tc.warning)
			}
		})
	}
	if _, err := ReadKernel(KernelFiles{Config: filepath.Join(t.TempDir(), "none")}); !errors.As(err, new(*InfraError)) {
		t.Errorf("unreadable config: %v, want an infra error", err)
	}
}
