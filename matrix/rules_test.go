package matrix

import (
	"slices"
	"strings"
	"testing"
)

func classified(t *testing.T, kernel, docker, driver, scratch string) Cell {
	t.Helper()
	rules, err := compileRules(BuiltinRules())
	if err != nil {
		t.Fatal(err)
	}
	c := Cell{
		Kernel: KernelRef{Version: kernel}, Distro: DistroRef{Name: "debian12", Suite: "bookworm"},
		Docker: DockerRef{Version: docker}, Driver: driver, Status: StatusRunnable,
		Settings: Settings{ScratchFS: scratch},
	}
	classify(&c, rules)
	return c
}

func TestBuiltinRules(t *testing.T) {
	tests := []struct {
		kernel, docker, driver, scratch string
		status                          Status
		reason                          string   // substring of Reason when unsupported
		pending                         []string // modules of the pending checks
		mkfs                            string
	}{
		{kernel: "6.12", docker: "26.1.5", driver: "aufs", status: StatusUnsupported, reason: "aufs driver was removed in Docker 24.0"},
		{kernel: "6.1", docker: "23.0.6", driver: "aufs", status: StatusRunnable, pending: []string{"aufs"}},
		{kernel: "3.16", docker: "1.6.2", driver: "aufs", status: StatusRunnable, pending: []string{"aufs"}},
		{kernel: "6.1", docker: "20.10.24", driver: "aufs", scratch: "btrfs", status: StatusUnsupported, reason: "btrfs backing"},
		{kernel: "6.1", docker: "24.0.0", driver: "overlay", status: StatusUnsupported, reason: "legacy overlay driver was removed in Docker 24.0"},
		{kernel: "3.16.0", docker: "20.10.5", driver: "overlay", status: StatusUnsupported, reason: "kernel >= 3.18"},
		{kernel: "3.18", docker: "20.10.5", driver: "overlay", status: StatusRunnable},
		{kernel: "4.9", docker: "1.3.3", driver: "overlay", status: StatusUnsupported, reason: "first appeared in Docker 1.4.0"},
		{kernel: "3.16", docker: "20.10.24", driver: "overlay2", status: StatusUnsupported, reason: "overlay2 needs kernel >= 4.0"},
		{kernel: "4.0", docker: "1.12.0", driver: "overlay2", status: StatusRunnable},
		{kernel: "4.0", docker: "1.11.2", driver: "overlay2", status: StatusUnsupported, reason: "first appeared in Docker 1.12.0"},
		{kernel: "6.1", docker: "20.10.24", driver: "overlay2", scratch: "xfs", status: StatusRunnable, mkfs: "-n ftype=1"},
		{kernel: "6.1", docker: "20.10.24", driver: "overlay2", scratch: "btrfs", status: StatusUnsupported, reason: "not btrfs"},
		{kernel: "6.12", docker: "25.0.0", driver: "devicemapper", status: StatusUnsupported, reason: "devicemapper driver was removed in Docker 25.0"},
		{kernel: "6.1", docker: "24.0.7", driver: "devicemapper", status: StatusRunnable, pending: []string{"dm_mod", "dm_thin_pool"}},
		{kernel: "6.1", docker: "20.10.24", driver: "btrfs", status: StatusRunnable, pending: []string{"btrfs"}},
		{kernel: "6.1", docker: "20.10.24", driver: "btrfs", scratch: "ext4", status: StatusUnsupported, reason: "needs /var/lib/docker on btrfs"},
		{kernel: "6.1", docker: "20.10.24", driver: "zfs", status: StatusRunnable, pending: []string{"zfs"}},
		{kernel: "6.1", docker: "20.10.24", driver: "zfs", scratch: "xfs", status: StatusUnsupported, reason: "ZFS dataset"},
		{kernel: "5.10", docker: "19.03.15", driver: "fuse-overlayfs", status: StatusUnsupported, reason: "Docker 20.10.0"},
		{kernel: "5.10", docker: "20.10.0", driver: "fuse-overlayfs", status: StatusRunnable},
		{kernel: "3.2", docker: "20.10.24", driver: "vfs", status: StatusUnsupported, reason: "older than 3.10"},
		{kernel: "3.2", docker: "23.0.0", driver: "vfs", status: StatusRunnable},
		{kernel: "3.10", docker: "20.10.24", driver: "vfs", status: StatusRunnable},
		// A Debian ABI suffix is not a pre-release: 6.1.0-13 is 6.1.0.
		{kernel: "3.16.0-4", docker: "20.10.24", driver: "overlay", status: StatusUnsupported, reason: "kernel >= 3.18"},
		{kernel: "4.0.0-1", docker: "20.10.24", driver: "overlay2", status: StatusRunnable},
	}
	for _, tc := range tests {
		name := strings.Join([]string{tc.kernel, tc.docker, tc.driver, tc.scratch}, "/")
		t.Run(name, func(t *testing.T) {
			c := classified(t, tc.kernel, tc.docker, tc.driver, tc.scratch)
			if c.Status != tc.status {
				t.Fatalf("status %s (%s), want %s", c.Status, c.Reason, tc.status)
			}
			if !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", c.Reason, tc.reason)
			}
			if tc.status == StatusUnsupported && !strings.Contains(c.Reason, "https://") {
				t.Errorf("reason %q does not cite its source", c.Reason)
			}
			var mods []string
			for _, p := range c.Pending {
				mods = append(mods, p.Module)
			}
			if !slices.Equal(mods, tc.pending) {
				t.Errorf("pending modules %v, want %v", mods, tc.pending)
			}
			if got := strings.Join(c.ScratchMkfsArgs, " "); got != tc.mkfs {
				t.Errorf("mkfs args %q, want %q", got, tc.mkfs)
			}
		})
	}
}

func TestBuiltinRulesAreSourced(t *testing.T) {
	if _, err := compileRules(BuiltinRules()); err != nil {
		t.Fatal(err)
	}
	for _, r := range BuiltinRules() {
		// A fact about Docker, the kernel or a distro cites a public page; a
		// limit of matrixctl itself cites the README section that states it.
		public := strings.Contains(r.Source, "https://") && !strings.Contains(r.Source, ".md ")
		harness := strings.HasPrefix(r.Source, "harness: matrixctl README, ")
		if r.Reason == "" || !(public || harness) {
			t.Errorf("rule %+v lacks a reason or a source a user can open (a title and URL, or the README section of a harness limit)", r)
		}
		if r.Check != nil && (r.Check.Reason == "" || (len(r.Check.AnyConfig) == 0 && r.Check.Module == "")) {
			t.Errorf("rule %q: check %+v is empty or has no reason", r.Reason, r.Check)
		}
	}
}

func TestEvalKernelChecks(t *testing.T) {
	aufs := KernelCheck{AnyConfig: []string{"CONFIG_AUFS_FS"}, Module: "aufs", Reason: "no aufs"}
	btrfs := KernelCheck{AnyConfig: []string{"CONFIG_BTRFS_FS"}, Module: "btrfs", Reason: "no btrfs"}
	modules := func(names ...string) func(string) bool {
		return func(m string) bool { return slices.Contains(names, m) }
	}
	tests := []struct {
		name   string
		checks []KernelCheck
		config map[string]string
		mods   func(string) bool
		ok     bool
		reason string
	}{
		{"no checks", nil, nil, nil, true, ""},
		{"built in", []KernelCheck{aufs}, map[string]string{"CONFIG_AUFS_FS": "y"}, nil, true, ""},
		{"module config", []KernelCheck{aufs}, map[string]string{"CONFIG_AUFS_FS": "m"}, nil, true, ""},
		{"module file only", []KernelCheck{aufs}, map[string]string{}, modules("aufs"), true, ""},
		{"not set", []KernelCheck{aufs}, map[string]string{"CONFIG_AUFS_FS": "n"}, modules("btrfs"), false, "no aufs"},
		{"debian 6.1", []KernelCheck{aufs, btrfs}, map[string]string{"CONFIG_BTRFS_FS": "m"}, modules("btrfs"), false, "no aufs"},
		{"both missing", []KernelCheck{aufs, btrfs}, nil, nil, false, "no aufs; no btrfs"},
		{"quoted value", []KernelCheck{btrfs}, map[string]string{"CONFIG_BTRFS_FS": `"y"`}, nil, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := EvalKernelChecks(tc.checks, tc.config, tc.mods)
			if ok != tc.ok || reason != tc.reason {
				t.Errorf("got (%v, %q), want (%v, %q)", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

func TestSpecRules(t *testing.T) {
	s, err := Load("testdata/valid-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Cell{}
	for _, c := range cells {
		byID[c.ID] = c
	}
	fuse := byID["k6.10-debian13-docker26.1.5-fuse-overlayfs"]
	if fuse.Status != StatusUnsupported || !strings.Contains(fuse.Reason, "since 5.11") || !strings.Contains(fuse.Reason, "select-storage-driver") {
		t.Errorf("spec rule not applied: %+v", fuse)
	}
	o2 := byID["k6.1-debian12-docker20.10.24-overlay2"]
	if o2.Status != StatusRunnable || len(o2.Pending) != 1 || o2.Pending[0].Module != "overlay" || o2.Pending[0].Reason != "the kernel has no overlayfs" {
		t.Errorf("spec check rule not applied: %+v", o2)
	}
	if c := byID["k6.10-debian13-docker26.1.5-overlay2"]; len(c.Pending) != 0 {
		t.Errorf("spec check rule applied to the wrong distro: %+v", c)
	}
	if got := o2.Settings; !slices.Equal(got.Probes, []string{"io"}) || got.MemoryMB != 1024 {
		t.Errorf("settings %+v: want probes [io] and 1024 MiB", got)
	}
}
