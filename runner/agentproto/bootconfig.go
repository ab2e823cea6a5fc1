package agentproto

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/matrixctl/matrixctl/internal/drivers"
)

// Well-known disk serials: the host gives each virtio disk one of these
// serials and the agent finds the disk by /sys/block/<dev>/serial.
const (
	SerialRoot    = "mx-root"
	SerialModules = "mx-modules"
	SerialScratch = "mx-scratch"
)

// Paths inside the initramfs the host builds for the agent.
const (
	// InitramfsModuleDir holds the modules the agent loads before it can see its disks.
	InitramfsModuleDir = "/mx/modules"
	// InitramfsModuleOrder lists the files in InitramfsModuleDir, one per line, in load order.
	InitramfsModuleOrder = "/mx/modules/order"
)

// Cmdline parameter prefix; the kernel leaves dotted parameters it does not
// know to modules, and the agent reads them from /proc/cmdline.
const cmdlinePrefix = "matrixctl."

// BootConfig is what the agent needs to know about its cell.
type BootConfig struct {
	// Driver is Docker's storage driver (overlay2, overlay, aufs, btrfs, devicemapper, vfs, zfs ...).
	Driver string
	// ScratchFS is the filesystem the scratch disk gets (ext4, xfs, btrfs); empty means the driver's default.
	ScratchFS string
	// Channel is the guest device of the agent channel, e.g. /dev/ttyS1.
	Channel string
	// DockerdTimeoutS bounds how long the agent waits for dockerd to answer.
	DockerdTimeoutS int
	// DockerdDebug adds --debug to dockerd.
	DockerdDebug bool
	// ReuseScratch mounts the scratch disk's existing filesystem instead of
	// making a new one (a second boot after a power cut).
	ReuseScratch bool
	// Init is InitSystemd (the rootfs's /sbin/init is PID 1 and starts the
	// distro's docker.service; the agent runs as a unit of it) or InitAgent
	// (the agent stays PID 1 and starts containerd and dockerd itself).
	// Empty means DefaultInit.
	Init string
	// Cgroup is CgroupDistro (empty), CgroupV1 or CgroupV2: the cgroup layout
	// systemd is asked for on the kernel command line (InitParams).
	Cgroup string
}

// Init systems and cgroup layouts a cell can ask for.
const (
	InitSystemd  = "systemd"
	InitAgent    = "agent"
	CgroupDistro = "distro"
	CgroupV1     = "v1"
	CgroupV2     = "v2"
)

// DefaultInit is the init of a cell that names none: the rootfs's own
// systemd, so that a cell is configured like a standard install of its
// distro. The agent as PID 1 (init: agent) stays for kernels or images
// without systemd; see README, "What kind of host a cell is".
const DefaultInit = InitSystemd

// InitMode is c.Init with the default applied.
func (c BootConfig) InitMode() string {
	if c.Init == "" {
		return DefaultInit
	}
	return c.Init
}

// ThinPoolByLVM reports whether the agent makes c's devicemapper thin pool
// with LVM, as Docker's direct-lvm guide does (LVM waits for udev, so only
// under init: systemd), rather than by hand with dmsetup and no udev sync
// (init: agent, a fidelity cost listed in HarnessChanges).
func (c BootConfig) ThinPoolByLVM() bool {
	return c.Driver == "devicemapper" && c.InitMode() == InitSystemd
}

// CheckedFS is what the host checker examines on c's scratch disk after a
// clean shutdown (drivers.CheckedFS; c.ScratchFS already defaulted):
// "lvm-thin" for a thin pool made with LVM, whose metadata is a logical
// volume inside the LVM physical volume rather than at the disk's start.
func (c BootConfig) CheckedFS() string {
	fs := drivers.CheckedFS(c.Driver, c.ScratchFS)
	if fs == "thin" && c.ThinPoolByLVM() {
		return "lvm-thin"
	}
	return fs
}

var bootKeys = []struct {
	key   string
	get   func(*BootConfig) string
	set   func(*BootConfig, string) error
	check func(string) error
}{
	{"driver", func(c *BootConfig) string { return c.Driver }, func(c *BootConfig, v string) error { c.Driver = v; return nil }, token},
	{"scratchfs", func(c *BootConfig) string { return c.ScratchFS }, func(c *BootConfig, v string) error { c.ScratchFS = v; return nil }, token},
	{"channel", func(c *BootConfig) string { return c.Channel }, func(c *BootConfig, v string) error { c.Channel = v; return nil }, devPath},
	{"dockerd_timeout", func(c *BootConfig) string {
		if c.DockerdTimeoutS == 0 {
			return ""
		}
		return strconv.Itoa(c.DockerdTimeoutS)
	}, func(c *BootConfig, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 86400 {
			return fmt.Errorf("bad dockerd_timeout %q", v)
		}
		c.DockerdTimeoutS = n
		return nil
	}, func(string) error { return nil }},
	{"dockerd_debug", func(c *BootConfig) string {
		if c.DockerdDebug {
			return "1"
		}
		return ""
	}, func(c *BootConfig, v string) error { c.DockerdDebug = v == "1"; return nil }, func(string) error { return nil }},
	{"reuse_scratch", func(c *BootConfig) string {
		if c.ReuseScratch {
			return "1"
		}
		return ""
	}, func(c *BootConfig, v string) error { c.ReuseScratch = v == "1"; return nil }, func(string) error { return nil }},
	{"init", func(c *BootConfig) string { return c.Init }, func(c *BootConfig, v string) error { c.Init = v; return nil }, oneOf(InitSystemd, InitAgent)},
	{"cgroup", func(c *BootConfig) string { return c.Cgroup }, func(c *BootConfig, v string) error { c.Cgroup = v; return nil }, oneOf(CgroupDistro, CgroupV1, CgroupV2)},
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		for _, x := range values {
			if v == x {
				return nil
			}
		}
		return fmt.Errorf("bad value %q (want one of %s)", v, strings.Join(values, ", "))
	}
}

func token(v string) error {
	if v == "" || len(v) > 64 {
		return fmt.Errorf("bad value %q", v)
	}
	for i := 0; i < len(v); i++ {
		if b := v[i]; !isAlnum(b) && b != '-' && b != '_' {
			return fmt.Errorf("bad value %q", v)
		}
	}
	return nil
}

func devPath(v string) error {
	if !strings.HasPrefix(v, "/dev/") || strings.Contains(v, "..") || strings.ContainsAny(v, " \t\n\x00") {
		return fmt.Errorf("bad device %q", v)
	}
	return nil
}

// Params renders c as kernel command-line parameters.
func (c BootConfig) Params() ([]string, error) {
	var out []string
	for _, k := range bootKeys {
		v := k.get(&c)
		if v == "" {
			continue
		}
		if err := k.check(v); err != nil {
			return nil, fmt.Errorf("boot config %s: %w", k.key, err)
		}
		out = append(out, cmdlinePrefix+k.key+"="+v)
	}
	return out, nil
}

// ParseCmdline reads a BootConfig from a kernel command line (/proc/cmdline).
// Unknown matrixctl.* keys are errors; other parameters are ignored.
func ParseCmdline(cmdline string) (BootConfig, error) {
	var c BootConfig
	for _, f := range strings.Fields(cmdline) {
		rest, ok := strings.CutPrefix(f, cmdlinePrefix)
		if !ok {
			continue
		}
		key, val, _ := strings.Cut(rest, "=")
		found := false
		for _, k := range bootKeys {
			if k.key != key {
				continue
			}
			found = true
			if err := k.check(val); err != nil {
				return BootConfig{}, fmt.Errorf("kernel cmdline %s: %w", f, err)
			}
			if err := k.set(&c, val); err != nil {
				return BootConfig{}, fmt.Errorf("kernel cmdline %s: %w", f, err)
			}
		}
		if !found {
			return BootConfig{}, fmt.Errorf("kernel cmdline: unknown parameter %q", f)
		}
	}
	return c, nil
}
