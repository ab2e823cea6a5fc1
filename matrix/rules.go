package matrix

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"

	"github.com/matrixctl/matrixctl/internal/drivers"
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
	ScratchFS []string // backing filesystems (the cell's scratch_fs, or the driver's default)
	Init      []string // the cell's init setting (empty setting: DefaultInit)
	Cgroup    []string // the cell's cgroup setting (empty setting: CgroupDistro)
	Kernel    string   // go-version constraint on the kernel version ("6.1" counts as 6.1.0)
	Docker    string   // go-version constraint on the docker version
	Check     *KernelCheck
	MkfsArgs  []string
	Reason    string
	// Source cites the public documents the fact comes from (title and
	// URL); the unsupported reason shown to users ends with it.
	Source string
}

// BuiltinRules is the built-in compatibility table. The facts (versions,
// kernel symbols and modules, backing filesystems) and their sources come
// from the storage-driver table in internal/drivers; each row cites them:
// Docker's storage driver pages (https://docs.docker.com/engine/storage/drivers/),
// its deprecated features page (https://docs.docker.com/engine/deprecated/),
// the Docker CHANGELOG, moby's source tree and check-config.sh.
func BuiltinRules() []Rule {
	aufs, overlay, o2 := drivers.MustLookup("aufs"), drivers.MustLookup("overlay"), drivers.MustLookup("overlay2")
	dm, btrfs, zfs, fuse := drivers.MustLookup("devicemapper"), drivers.MustLookup("btrfs"), drivers.MustLookup("zfs"), drivers.MustLookup("fuse-overlayfs")
	return []Rule{
		// aufs
		removedRule(aufs, "the aufs driver was removed in Docker "+aufs.Removed.Version),
		{Drivers: []string{"aufs"}, ScratchFS: rejectedScratch(aufs),
			Reason: "aufs cannot use a " + strings.Join(rejectedScratch(aufs), " or ") + " backing filesystem",
			Source: drivers.Cite(aufs.ScratchSource, drivers.AufsDoc)},
		{Drivers: []string{"aufs"}, Docker: "< " + aufs.Removed.Version,
			Check:  kernelCheck(aufs.Kernel[0], "the kernel has no aufs (%s, module %s): aufs is not in mainline and needs an AUFS-patched kernel"),
			Reason: fmt.Sprintf("aufs needs an AUFS-patched kernel (%s or the %s module)", aufs.Kernel[0].Config, aufs.Kernel[0].Module),
			Source: drivers.Cite(drivers.AufsDoc, aufs.Kernel[0].Source)},

		// legacy overlay
		removedRule(overlay, "the legacy overlay driver was removed in Docker "+overlay.Removed.Version+" (use overlay2)"),
		addedRule(overlay),
		{Drivers: []string{"overlay"}, Kernel: "< " + overlay.MinKernel.Version,
			Reason: "the legacy overlay driver needs mainline OverlayFS (kernel >= " + overlay.MinKernel.Version + ", filesystem named " + overlay.ProcFS + ")",
			Source: drivers.Cite(overlay.MinKernel.Source)},

		// overlay2
		{Drivers: []string{"overlay2"}, Kernel: "< " + o2.MinKernel.Version,
			Reason: "overlay2 needs kernel >= " + o2.MinKernel.Version + " (multiple lower directories; RHEL backports 3.10.0-514+ are not modelled)",
			Source: drivers.Cite(o2.MinKernel.Source)},
		addedRule(o2),

		// overlay and overlay2 backing filesystems (d_type)
		{Drivers: []string{"overlay", "overlay2"}, ScratchFS: rejectedScratch(o2),
			Reason: "overlay and overlay2 are supported on ext4 and xfs (ftype=1) backing filesystems, not " + strings.Join(rejectedScratch(o2), " or "),
			Source: drivers.Cite(o2.ScratchSource)},
		{Drivers: []string{"overlay", "overlay2"}, ScratchFS: []string{"xfs"}, MkfsArgs: []string{"-n", "ftype=1"},
			Reason: "xfs backing needs ftype=1 (d_type); Docker >= 23.0 refuses to start without it",
			Source: drivers.Cite(drivers.DType, drivers.OverlayDoc)},

		// devicemapper
		removedRule(dm, "the devicemapper driver was removed in Docker "+dm.Removed.Version),
		addedRule(dm),
		{Drivers: []string{"devicemapper"}, Docker: "< " + dm.Removed.Version,
			Check:  kernelCheck(dm.Kernel[0], "the kernel has no device-mapper (%s, module %s)"),
			Reason: "devicemapper needs " + dm.Kernel[0].Config,
			Source: drivers.Cite(dm.Kernel[0].Source)},
		{Drivers: []string{"devicemapper"}, Docker: "< " + dm.Removed.Version,
			Check:  kernelCheck(dm.Kernel[1], "the kernel has no dm-thin (%s, module %s)"),
			Reason: "devicemapper needs " + dm.Kernel[1].Config,
			Source: drivers.Cite(dm.Kernel[1].Source)},

		// btrfs
		{Drivers: []string{"btrfs"}, ScratchFS: rejectedScratch(btrfs),
			Reason: "the btrfs driver needs /var/lib/docker on btrfs (scratch_fs btrfs)",
			Source: drivers.Cite(btrfs.ScratchSource)},
		addedRule(btrfs),
		{Drivers: []string{"btrfs"},
			Check:  kernelCheck(btrfs.Kernel[0], "the kernel has no btrfs (%s, module %s)"),
			Reason: "btrfs needs " + btrfs.Kernel[0].Config,
			Source: drivers.Cite(btrfs.Kernel[0].Source)},

		// zfs
		{Drivers: []string{"zfs"}, ScratchFS: rejectedScratch(zfs),
			Reason: "the zfs driver needs /var/lib/docker on a ZFS dataset (leave scratch_fs unset)",
			Source: drivers.Cite(zfs.ScratchSource)},
		addedRule(zfs),
		{Drivers: []string{"zfs"},
			Check: &KernelCheck{AnyConfig: []string{zfs.Kernel[0].Config}, Module: zfs.Kernel[0].Module,
				Reason: "the kernel has no ZFS (out-of-tree ZFS on Linux module " + zfs.Kernel[0].Module + ")"},
			Reason: "zfs needs the out-of-tree " + zfs.Kernel[0].Module + " module",
			Source: drivers.Cite(zfs.Kernel[0].Source)},

		// fuse-overlayfs
		addedRule(fuse),

		// init and cgroup layout
		{Distros: []string{"debian13", "trixie"}, Init: []string{InitSystemd}, Cgroup: []string{"v1"},
			Reason: "debian13's systemd 257 refuses cgroup v1 (systemd 256 and later boot v1 only when forced with SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1, 258 removed it); matrixctl does not force it",
			Source: "systemd NEWS, CHANGES WITH 256 (cgroup v1 deprecated: it boots only with SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1) and CHANGES WITH 258 (cgroup v1 removed), https://github.com/systemd/systemd/blob/main/NEWS"},
		{Init: []string{InitAgent}, Cgroup: []string{"v2"},
			Reason: "init: agent mounts cgroup v1 by hand; cgroup v2 needs init: systemd",
			Source: "harness: matrixctl README, What kind of host a cell is (init: agent mounts cgroup v1 by hand: the harness's own limit, not the kernel's)"},

		// daemon kernel floor
		{Docker: "< 23", Kernel: "< 3.10",
			Reason: "dockerd before 23.0 refuses to start on kernels older than 3.10",
			Source: drivers.Cite(drivers.DaemonKernelFloor)},
	}
}

// removedRule makes cells of d on a Docker release without it unsupported.
func removedRule(d drivers.Driver, reason string) Rule {
	return Rule{Drivers: []string{d.Name}, Docker: ">= " + d.Removed.Version, Reason: reason,
		Source: drivers.Cite(d.Removed.Source)}
}

// addedRule makes cells of d on a Docker release older than d unsupported.
func addedRule(d drivers.Driver) Rule {
	return Rule{Drivers: []string{d.Name}, Docker: "< " + d.Added.Version,
		Reason: "the " + d.Name + " driver first appeared in Docker " + d.Added.Version,
		Source: drivers.Cite(d.Added.Source)}
}

// kernelCheck checks for need; reason has two %s, for its config symbol and module.
func kernelCheck(need drivers.KernelNeed, reason string) *KernelCheck {
	return &KernelCheck{AnyConfig: []string{need.Config}, Module: need.Module,
		Reason: fmt.Sprintf(reason, need.Config, need.Module)}
}

// rejectedScratch lists the scratch filesystems d does not run on.
func rejectedScratch(d drivers.Driver) []string {
	return slices.DeleteFunc(ScratchFilesystems(), func(fs string) bool { return slices.Contains(d.ScratchAllowed, fs) })
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
			fs = drivers.DefaultScratchFS(c.Driver)
		}
		if !slices.Contains(r.ScratchFS, fs) {
			return false
		}
	}
	if len(r.Init) > 0 && !slices.Contains(r.Init, cmp.Or(c.Settings.Init, DefaultInit)) {
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
