package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func mountAll(specs []mountSpec) error {
	var errs []error
	for _, m := range specs {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// mountEarly mounts what the initramfs stage needs.
func mountEarly() error {
	return mountAll([]mountSpec{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	})
}

// loadInitramfsModules loads the modules the host packed, in the host's order.
func (a *agent) loadInitramfsModules() error {
	order, err := os.ReadFile(agentproto.InitramfsModuleOrder)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel with everything built in
	}
	if err != nil {
		return fmt.Errorf("read module order: %w", err)
	}
	var loaded []string
	for _, name := range strings.Fields(string(order)) {
		path := filepath.Join(agentproto.InitramfsModuleDir, filepath.Base(name))
		if err := finitModule(path); err != nil {
			if errors.Is(err, unix.ENODEV) { // hardware-specific module on other hardware
				a.logf("module %s: %v (skipped)", name, err)
				continue
			}
			return fmt.Errorf("load module %s: %w", name, err)
		}
		loaded = append(loaded, strings.TrimSuffix(name, ".ko"))
	}
	a.logf("loaded initramfs modules: %s", strings.Join(loaded, " "))
	return nil
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// findDisk returns /dev/<name> of the virtio disk whose serial is serial.
func findDisk(serial string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, _ := os.ReadDir("/sys/block")
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err == nil && strings.TrimSpace(string(b)) == serial {
				return "/dev/" + e.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			return "", fmt.Errorf("no disk with serial %q after %s (block devices: %s)", serial, timeout, strings.Join(names, " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// switchRoot mounts the root disk and makes it /, keeping the agent running.
func (a *agent) switchRoot() error {
	dev, err := findDisk(agentproto.SerialRoot, 20*time.Second)
	if err != nil {
		return err
	}
	const newRoot = "/newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, newRoot, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount root %s: %w", dev, err)
	}
	return enterRoot(newRoot)
}

// enterRoot makes the mounted newRoot the root, as switch_root does: the
// initramfs's /proc, /sys and /dev move into it, it moves onto / and the
// agent chroots into it. Both inits take this step (switchRoot, bootSystemd).
func enterRoot(newRoot string) error {
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		target := newRoot + d
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(d, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// setupSystem mounts what dockerd and its tools need inside the new root.
func (a *agent) setupSystem() error {
	err := mountAll([]mountSpec{
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"mqueue", "/dev/mqueue", "mqueue", 0, ""},
		{"tmpfs", "/sys/fs/cgroup", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0755"},
	})
	if err != nil {
		return err
	}
	skipped, err := mountCgroupV1()
	if err != nil {
		return err
	}
	if len(skipped) > 0 {
		a.logf("cgroup v1: this kernel has no v1 interface for %s; left unmounted", strings.Join(skipped, ", "))
	}
	os.Symlink("/proc/self/fd", "/dev/fd")
	os.Symlink("/proc/self/fd/0", "/dev/stdin")
	os.Symlink("/proc/self/fd/1", "/dev/stdout")
	os.Symlink("/proc/self/fd/2", "/dev/stderr")
	unix.Sethostname([]byte("matrixctl"))
	if a.release == "" {
		return errors.New("unknown kernel release")
	}
	dev, err := findDisk(agentproto.SerialModules, 5*time.Second)
	if err != nil {
		return err
	}
	target := "/lib/modules/" + a.release
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, target, "ext4", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount modules disk %s: %w", dev, err)
	}
	return nil
}

// mountCgroupV1 mounts every enabled v1 controller in its own hierarchy and
// returns the controllers the kernel lists but cannot mount as v1: newer
// kernels build some v1 interfaces out (Debian's 6.12 has no v1 cpuset, and
// the mount fails with EINVAL), which runc tolerates on v1 hosts.
func mountCgroupV1() (skipped []string, err error) {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || strings.HasPrefix(f[0], "#") || f[3] != "1" {
			continue
		}
		dir := "/sys/fs/cgroup/" + f[0]
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, f[0])
		switch {
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENODEV):
			os.Remove(dir)
			skipped = append(skipped, f[0])
		case err != nil:
			errs = append(errs, fmt.Errorf("mount cgroup %s: %w", f[0], err))
		}
	}
	return skipped, errors.Join(errs...)
}

// network configures QEMU user networking's fixed addresses.
func (a *agent) network() error {
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", "10.0.2.15/24", "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", "10.0.2.2"},
	}
	for _, argv := range steps {
		if _, err := a.runCmd(10*time.Second, argv...); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	if !a.guest { // a distro's systemd boot keeps the rootfs's own /etc/hosts
		os.WriteFile("/etc/hosts", []byte("127.0.0.1 localhost matrixctl\n"), 0o644)
	}
	return nil
}
