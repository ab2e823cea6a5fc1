package agentproto

// This file is the one place that lists how a cell's guest differs from a
// standard Debian install plus `apt-get install docker.io` (its fidelity
// costs). The host writes the list into results.json per run
// (host.harness_changes); README repeats it for readers.

// HarnessChange is one way the harness makes the guest differ from a real host.
type HarnessChange struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// harnessChanges are the rows; applies says whether a row holds for a cell.
var harnessChanges = []struct {
	applies func(BootConfig) bool
	HarnessChange
}{
	{always, HarnessChange{"kernel and initramfs are matrixctl's: direct kernel boot, the initramfs is the agent, which loads virtio/ext4 and switches to the root disk",
		"the cell's kernel comes from a Debian kernel package without Debian's initramfs-tools run"}},
	{always, HarnessChange{"kernel cmdline: console=ttyS0,115200 panic=-1 8250.nr_uarts=2 edd=off and matrixctl.* parameters",
		"console capture, a panic ends the VM, a second serial port for the agent channel, the cell's settings for the agent"}},
	{always, HarnessChange{"the kernel's modules are a read-only disk mounted at /lib/modules/<release>",
		"the kernel is not installed into the rootfs by dpkg"}},
	{always, HarnessChange{"the root disk is a throwaway snapshot of the cached rootfs image",
		"every run starts from the same image"}},
	{isSystemd, HarnessChange{"kernel cmdline: net.ifnames=0",
		"the agent configures eth0 itself; predictable names would rename it while it is configured"}},
	{isSystemd, HarnessChange{"a runtime unit matrixctl-agent.service in /run/systemd/system (wanted by multi-user.target, Before=docker.service containerd.service), its binary under /run/matrixctl",
		"reports to the host, prepares the scratch disk, proxies the Docker API; nothing is written into the rootfs image"}},
	{isSystemd, HarnessChange{"network: lo and eth0 get QEMU user-net's fixed address 10.0.2.15/24 with the default route via 10.0.2.2, set by the agent (no ifupdown/DHCP)",
		"the host reaches dockerd through a QEMU hostfwd port to 10.0.2.15"}},
	{isSystemd, HarnessChange{"/etc/docker/daemon.json holds storage-driver, data-root (the scratch disk at /var/lib/docker) and the driver's storage-opts from Docker's docs",
		"the cell's storage driver on its own scratch disk"}},
	{func(c BootConfig) bool { return c.ThinPoolByLVM() }, HarnessChange{"devicemapper: before docker.service the agent runs the steps of Docker's direct-lvm guide on the scratch disk (pvcreate, vgcreate docker, lvcreate thinpool 95%VG and thinpoolmeta 1%VG, lvconvert --thinpool, /etc/lvm/profile/docker-thinpool.profile, lvchange --metadataprofile, monitoring checked with lvs)",
		"what a user does by hand before switching Docker to devicemapper; LVM, udev and dmeventd are the distro's own"}},
	{isSystemd, HarnessChange{"the Docker API is reached through a TCP proxy in the agent to /run/docker.sock; docker.service is unchanged",
		"no dockerd -H tcp:// flag differs between cells"}},
	{func(c BootConfig) bool { return isSystemd(c) && c.Cgroup == CgroupV1 }, HarnessChange{"kernel cmdline: systemd.unified_cgroup_hierarchy=0",
		"the cell asks for cgroup v1 (cgroup: v1)"}},
	{func(c BootConfig) bool { return isSystemd(c) && c.Cgroup == CgroupV2 }, HarnessChange{"kernel cmdline: systemd.unified_cgroup_hierarchy=1",
		"the cell asks for cgroup v2 (cgroup: v2)"}},
	{func(c BootConfig) bool { return isAgent(c) && c.Driver == "devicemapper" }, HarnessChange{"devicemapper: the thin pool mx-thinpool is built by hand with dmsetup create --noudevsync (256 MiB of metadata at the disk's start, no LVM, no dmeventd autoextend); dockerd gets dm.override_udev_sync_check=true, dm.use_deferred_removal=false, dm.use_deferred_deletion=false",
		"no udev under the agent init: LVM and udev sync wait for udev; the documented direct-lvm pool needs init: systemd"}},
	{isAgent, HarnessChange{"no init system: the agent is PID 1, mounts cgroup v1 by hand and starts containerd and dockerd with its own flags",
		"the cell asks for init: agent (kernels or images without systemd)"}},
}

func always(BootConfig) bool      { return true }
func isSystemd(c BootConfig) bool { return c.InitMode() == InitSystemd }
func isAgent(c BootConfig) bool   { return c.InitMode() == InitAgent }

// HarnessChanges lists how a guest booted with c differs from a standard install.
func HarnessChanges(c BootConfig) []HarnessChange {
	var out []HarnessChange
	for _, h := range harnessChanges {
		if h.applies(c) {
			out = append(out, h.HarnessChange)
		}
	}
	return out
}

// InitParams are the kernel command-line parameters c's init needs besides
// the harness's own: each appears in HarnessChanges.
func (c BootConfig) InitParams() []string {
	if c.InitMode() != InitSystemd {
		return nil
	}
	out := []string{"net.ifnames=0"}
	switch c.Cgroup {
	case CgroupV1:
		out = append(out, "systemd.unified_cgroup_hierarchy=0")
	case CgroupV2:
		out = append(out, "systemd.unified_cgroup_hierarchy=1")
	}
	return out
}
