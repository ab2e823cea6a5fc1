package matrix

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Rule is one row of the compatibility table. A rule matches a cell when every
// field it sets matches (empty fields match anything). A matching rule
// without Check makes the cell unsupported with Reason; a matching rule with
// Check adds a KernelCheck to the cell's Pending list, decided by the runner
// once the kernel package is downloaded (EvalKernelChecks). MkfsArgs are
// added to the cell's scratch mkfs arguments.
type Rule struct {
	Drivers   []string // storage drivers
	Distros   []string // distro names or suites
	ScratchFS []string // backing filesystems (the cell's scratch_fs, or DefaultScratchFS)
	Init      []string // the cell's init setting (empty setting: InitSystemd)
	Cgroup    []string // the cell's cgroup setting (empty setting: CgroupDistro)
	Kernel    string   // go-version constraint on the kernel version ("6.1" counts as 6.1.0)
	Docker    string   // go-version constraint on the docker version
	Check     *KernelCheck
	MkfsArgs  []string
	Reason    string
	// Source cites where the fact comes from (STORAGE-DRIVERS.md row and its sources).
	Source string
}

// BuiltinRules is the built-in compatibility table. Each row cites the row of
// STORAGE-DRIVERS.md (and that row's numbered sources) it comes from.
func BuiltinRules() []Rule {
	const (
		aufsRow    = "STORAGE-DRIVERS.md aufs row"
		overlayRow = "STORAGE-DRIVERS.md overlay (legacy) row"
		o2Row      = "STORAGE-DRIVERS.md overlay2 row"
		dmRow      = "STORAGE-DRIVERS.md devicemapper row"
		btrfsRow   = "STORAGE-DRIVERS.md btrfs row"
		zfsRow     = "STORAGE-DRIVERS.md zfs row"
		fuseRow    = "STORAGE-DRIVERS.md fuse-overlayfs row"
	)
	return []Rule{
		// aufs
		{Drivers: []string{"aufs"}, Docker: ">= 24",
			Reason: "the aufs driver was removed in Docker 24.0",
			Source: aufsRow + ": [5] v24.0.0 daemon/graphdriver tree, [8] check-config.sh v24.0.0, [1] deprecated.md"},
		{Drivers: []string{"aufs"}, ScratchFS: []string{"btrfs"},
			Reason: "aufs cannot use a btrfs backing filesystem",
			Source: aufsRow + ": backing filesystem column, [2] aufs-driver.md"},
		{Drivers: []string{"aufs"}, Docker: "< 24",
			Check: &KernelCheck{AnyConfig: []string{"CONFIG_AUFS_FS"}, Module: "aufs",
				Reason: "the kernel has no aufs (CONFIG_AUFS_FS, module aufs): aufs is not in mainline and needs an AUFS-patched kernel"},
			Reason: "aufs needs an AUFS-patched kernel (CONFIG_AUFS_FS or the aufs module)",
			Source: aufsRow + ": kernel column, [2] aufs-driver.md, [8] check-config.sh"},

		// legacy overlay
		{Drivers: []string{"overlay"}, Docker: ">= 24",
			Reason: "the legacy overlay driver was removed in Docker 24.0 (use overlay2)",
			Source: overlayRow + ": [1] deprecated.md §legacy-overlay, [5] v24.0.0 tree"},
		{Drivers: []string{"overlay"}, Docker: "< 1.4",
			Reason: "the overlay driver first appeared in Docker 1.4.0",
			Source: overlayRow + ": [4] CHANGELOG 1.4.0"},
		{Drivers: []string{"overlay"}, Kernel: "< 3.18",
			Reason: "the legacy overlay driver needs mainline OverlayFS (kernel >= 3.18, filesystem named overlay)",
			Source: overlayRow + ": kernel column, [3] overlayfs-driver.md @v1.12.6, [5] overlay.go supportsOverlay"},

		// overlay2
		{Drivers: []string{"overlay2"}, Kernel: "< 4.0",
			Reason: "overlay2 needs kernel >= 4.0 (multiple lower directories; RHEL backports 3.10.0-514+ are not modelled)",
			Source: o2Row + ": kernel column, [2] overlayfs-driver.md, [5] overlay2/overlay.go @v1.12.0"},
		{Drivers: []string{"overlay2"}, Docker: "< 1.12",
			Reason: "the overlay2 driver first appeared in Docker 1.12.0",
			Source: o2Row + ": [4] CHANGELOG 1.12.0"},

		// overlay and overlay2 backing filesystems (d_type)
		{Drivers: []string{"overlay", "overlay2"}, ScratchFS: []string{"btrfs"},
			Reason: "overlay and overlay2 are supported on ext4 and xfs (ftype=1) backing filesystems, not btrfs",
			Source: o2Row + " and " + overlayRow + ": backing filesystem columns, [2] overlayfs-driver.md, [3] selectadriver.md @v1.12.6"},
		{Drivers: []string{"overlay", "overlay2"}, ScratchFS: []string{"xfs"}, MkfsArgs: []string{"-n", "ftype=1"},
			Reason: "xfs backing needs ftype=1 (d_type); Docker >= 23.0 refuses to start without it",
			Source: "STORAGE-DRIVERS.md d_type cross-cutting rule: [1] §backing-filesystem-without-d_type, [5] overlay2/overlay.go @v20.10.0 vs @v23.0.0"},

		// devicemapper
		{Drivers: []string{"devicemapper"}, Docker: ">= 25",
			Reason: "the devicemapper driver was removed in Docker 25.0",
			Source: dmRow + ": [5] v25.0.0 tree, [6] docker/cli#4307, [8] check-config.sh"},
		{Drivers: []string{"devicemapper"}, Docker: "< 0.7",
			Reason: "the devicemapper driver first appeared in Docker 0.7.0",
			Source: dmRow + ": [4] CHANGELOG 0.7.0"},
		{Drivers: []string{"devicemapper"}, Docker: "< 25",
			Check: &KernelCheck{AnyConfig: []string{"CONFIG_BLK_DEV_DM"}, Module: "dm_mod",
				Reason: "the kernel has no device-mapper (CONFIG_BLK_DEV_DM, module dm_mod)"},
			Reason: "devicemapper needs CONFIG_BLK_DEV_DM",
			Source: dmRow + ": kernel column, [8] check-config.sh"},
		{Drivers: []string{"devicemapper"}, Docker: "< 25",
			Check: &KernelCheck{AnyConfig: []string{"CONFIG_DM_THIN_PROVISIONING"}, Module: "dm_thin_pool",
				Reason: "the kernel has no dm-thin (CONFIG_DM_THIN_PROVISIONING, module dm_thin_pool)"},
			Reason: "devicemapper needs CONFIG_DM_THIN_PROVISIONING",
			Source: dmRow + ": kernel column, [8] check-config.sh"},

		// btrfs
		{Drivers: []string{"btrfs"}, ScratchFS: []string{"ext4", "xfs"},
			Reason: "the btrfs driver needs /var/lib/docker on btrfs (scratch_fs btrfs)",
			Source: btrfsRow + ": backing filesystem column, [2] btrfs-driver.md"},
		{Drivers: []string{"btrfs"}, Docker: "< 0.8",
			Reason: "the btrfs driver first appeared in Docker 0.8.0",
			Source: btrfsRow + ": [4] CHANGELOG 0.8.0"},
		{Drivers: []string{"btrfs"},
			Check: &KernelCheck{AnyConfig: []string{"CONFIG_BTRFS_FS"}, Module: "btrfs",
				Reason: "the kernel has no btrfs (CONFIG_BTRFS_FS, module btrfs)"},
			Reason: "btrfs needs CONFIG_BTRFS_FS",
			Source: btrfsRow + ": kernel column, [8] check-config.sh"},

		// zfs
		{Drivers: []string{"zfs"}, ScratchFS: []string{"ext4", "xfs", "btrfs"},
			Reason: "the zfs driver needs /var/lib/docker on a ZFS dataset (leave scratch_fs unset)",
			Source: zfsRow + ": backing filesystem column, [2] zfs-driver.md"},
		{Drivers: []string{"zfs"}, Docker: "< 1.7",
			Reason: "the zfs driver first appeared in Docker 1.7.0",
			Source: zfsRow + ": [4] CHANGELOG 1.7.0"},
		{Drivers: []string{"zfs"},
			Check: &KernelCheck{AnyConfig: []string{"CONFIG_ZFS"}, Module: "zfs",
				Reason: "the kernel has no ZFS (out-of-tree ZFS on Linux module zfs)"},
			Reason: "zfs needs the out-of-tree zfs module",
			Source: zfsRow + ": kernel column, [2] zfs-driver.md, [8] check-config.sh"},

		// fuse-overlayfs
		{Drivers: []string{"fuse-overlayfs"}, Docker: "< 20.10",
			Reason: "the fuse-overlayfs driver first appeared in Docker 20.10.0",
			Source: fuseRow + ": [5] v20.10.0 tree"},

		// init and cgroup layout
		{Distros: []string{"debian13", "trixie"}, Init: []string{InitSystemd}, Cgroup: []string{"v1"},
			Reason: "debian13's systemd 257 refuses cgroup v1 (systemd 256 and later boot v1 only when forced with SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1, 258 removed it); matrixctl does not force it",
			Source: "DESIGN.md facts (systemd 256 and later refuse cgroup v1 unless forced; 258 removed it); systemd NEWS v256 and v258, https://github.com/systemd/systemd/blob/main/NEWS"},
		{Init: []string{InitAgent}, Cgroup: []string{"v2"},
			Reason: "init: agent mounts cgroup v1 by hand; cgroup v2 needs init: systemd",
			Source: "runner/agent/boot.go mountCgroupV1 (the harness's own limit, not the kernel's)"},

		// daemon kernel floor
		{Docker: "< 23", Kernel: "< 3.10",
			Reason: "dockerd before 23.0 refuses to start on kernels older than 3.10",
			Source: "STORAGE-DRIVERS.md daemon kernel floor: [5] daemon/daemon_unix.go @v20.10.0, commit 1240f8b41d"},
	}
}

// compiledRule is a Rule with its constraints parsed.
type compiledRule struct {
	Rule
	kernel, docker version.Constraints
}

func compileRules(rules []Rule) ([]compiledRule, error) {
	out := make([]compiledRule, 0, len(rules))
	for _, r := range rules {
		c := compiledRule{Rule: r}
		var err error
		if r.Kernel != "" {
			if c.kernel, err = version.NewConstraint(r.Kernel); err != nil {
				return nil, fmt.Errorf("rule %q: kernel constraint: %w", r.Reason, err)
			}
		}
		if r.Docker != "" {
			if c.docker, err = version.NewConstraint(r.Docker); err != nil {
				return nil, fmt.Errorf("rule %q: docker constraint: %w", r.Reason, err)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// coreVersion parses v for rule evaluation: "6.1" is 6.1.0 and a suffix such
// as "-13-amd64" is ignored (go-version treats it as a pre-release, which
// constraints would otherwise never match).
func coreVersion(v string) *version.Version {
	parsed, err := version.NewVersion(v)
	if err != nil {
		return nil
	}
	return parsed.Core()
}

func (r compiledRule) matches(c *Cell) bool {
	if len(r.Drivers) > 0 && !slices.Contains(r.Drivers, c.Driver) {
		return false
	}
	if len(r.Distros) > 0 && !slices.Contains(r.Distros, c.Distro.Name) && !slices.Contains(r.Distros, c.Distro.Suite) {
		return false
	}
	if len(r.ScratchFS) > 0 {
		fs := c.Settings.ScratchFS
		if fs == "" {
			fs = DefaultScratchFS(c.Driver)
		}
		if !slices.Contains(r.ScratchFS, fs) {
			return false
		}
	}
	if len(r.Init) > 0 && !slices.Contains(r.Init, cmp.Or(c.Settings.Init, InitSystemd)) {
		return false
	}
	if len(r.Cgroup) > 0 && !slices.Contains(r.Cgroup, cmp.Or(c.Settings.Cgroup, CgroupDistro)) {
		return false
	}
	if r.kernel != nil {
		v := coreVersion(c.Kernel.Version)
		if v == nil || !r.kernel.Check(v) {
			return false
		}
	}
	if r.docker != nil {
		v := coreVersion(c.Docker.Version)
		if v == nil || !r.docker.Check(v) {
			return false
		}
	}
	return true
}

// classify applies rules to a cell that is runnable so far: every matching
// rule without a check makes it unsupported (all their reasons and sources
// are reported); matching rules with a check add pending checks, which are
// dropped again if the cell ends up unsupported.
func classify(c *Cell, rules []compiledRule) {
	var reasons []string
	for _, r := range rules {
		if !r.matches(c) {
			continue
		}
		c.ScratchMkfsArgs = append(c.ScratchMkfsArgs, r.MkfsArgs...)
		switch {
		case r.Check != nil:
			check := *r.Check
			check.AnyConfig = slices.Clone(check.AnyConfig)
			if check.Reason == "" {
				check.Reason = r.Reason
			}
			c.Pending = append(c.Pending, check)
		case len(r.MkfsArgs) == 0:
			reasons = append(reasons, fmt.Sprintf("%s [%s]", r.Reason, r.Source))
		}
	}
	if len(reasons) > 0 {
		c.unsupported(strings.Join(reasons, "; "))
	}
}

// unsupported marks the cell unsupported with reason, appending to any
// earlier reason, and drops checks that no longer matter.
func (c *Cell) unsupported(reason string) {
	if c.Status == StatusUnsupported && c.Reason != "" {
		c.Reason += "; " + reason
	} else {
		c.Reason = reason
	}
	c.Status = StatusUnsupported
	c.Pending = nil
}

// EvalKernelChecks decides a runnable cell's Pending checks once its kernel
// package has been downloaded and inspected. config maps option names to
// their values from the kernel's config file (CONFIG_AUFS_FS → "y", "m",
// ...); hasModule reports whether the kernel's module tree has a module of
// that name (nil means no modules). A check passes when one of its AnyConfig
// options is y or m, or when its Module exists. ok is false when any check
// fails, and reason then joins the failing checks' reasons; the runner
// reports such a cell unsupported with that reason.
func EvalKernelChecks(checks []KernelCheck, config map[string]string, hasModule func(string) bool) (ok bool, reason string) {
	var failed []string
	for _, c := range checks {
		if !checkPasses(c, config, hasModule) {
			r := c.Reason
			if r == "" {
				r = fmt.Sprintf("kernel lacks %s", strings.Join(append(slices.Clone(c.AnyConfig), c.Module), " / "))
			}
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		return false, strings.Join(failed, "; ")
	}
	return true, ""
}

func checkPasses(c KernelCheck, config map[string]string, hasModule func(string) bool) bool {
	for _, opt := range c.AnyConfig {
		switch strings.Trim(config[opt], `"`) {
		case "y", "m":
			return true
		}
	}
	return c.Module != "" && hasModule != nil && hasModule(c.Module)
}
