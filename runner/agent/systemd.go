package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

// init: systemd. The initramfs agent (PID 1) mounts the root disk, installs
// the guest side under the new root's /run (a tmpfs it mounts and hands to
// systemd, which keeps an already mounted /run), mounts the module disk where
// the distro's kmod looks, and execs the rootfs's /sbin/init. systemd then
// starts matrixctl-agent.service (guest mode, guest.go) and, ordered after
// it, the distro's own containerd.service and docker.service.

// Paths of the guest side inside the new root; all under /run, so nothing is
// written into the rootfs.
const (
	guestDir      = "/run/matrixctl"
	guestBinary   = guestDir + "/matrixctl-agent"
	guestUnitName = "matrixctl-agent.service"
	runtimeUnits  = "/run/systemd/system"
	guestWantedBy = "multi-user.target"
	newRoot       = "/newroot"
	sbinInit      = "/sbin/init"
)

// guestUnit is the unit file of the guest side. DefaultDependencies=no so it
// starts as soon as the root is writable, not after basic.target; the
// shutdown lines are the ones the default dependencies would have added.
// It starts after udev's coldplug and dm-event.socket, so that the scratch
// disk is prepared as a user would on a booted host: LVM syncs with udev,
// and dmeventd (socket-activated) monitors a devicemapper thin pool.
// Type=notify: the agent says READY=1 once daemon.json is written and the
// scratch disk is mounted, and only then may Docker start. Its progress
// lines (matrixctl-agent: ...) go to the serial console too, as under the
// agent init, so a console log shows where a boot got to.
func guestUnit(binary string) string {
	return `# Written at boot by matrixctl's initramfs (runtime only); see host.harness_changes.
[Unit]
Description=matrixctl guest agent (reports to the host, prepares Docker's scratch disk)
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service systemd-udevd.service systemd-udev-trigger.service dm-event.socket
Before=docker.service containerd.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=` + binary + ` guest
TimeoutStartSec=600
Restart=no
StandardOutput=journal+console
StandardError=journal+console
`
}

// guestFiles are the files the initramfs writes under the new root, by path
// relative to it; a value starting with "->" is a symlink target.
func guestFiles() map[string]string {
	return map[string]string{
		path.Join(runtimeUnits, guestUnitName):                         guestUnit(guestBinary),
		path.Join(runtimeUnits, guestWantedBy+".wants", guestUnitName): "->../" + guestUnitName,
	}
}

// resolveIn resolves p inside root the way the new root will see it:
// symlinks (absolute ones relative to root, e.g. a merged-/usr /lib ->
// usr/lib or /lib -> /usr/lib) are followed component by component.
// readlink returns an error for what is not a symlink.
func resolveIn(root, p string, readlink func(string) (string, error)) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		target, err := readlink(filepath.Join(root, next))
		if err != nil {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("resolve %s in %s: too many symlinks", p, root)
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(next), target)
		}
		parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts...)
		cur = "/"
	}
	return filepath.Join(root, cur), nil
}

// bootSystemd hands the machine to the rootfs's systemd; it returns only on failure.
func (a *agent) bootSystemd() error {
	dev, err := findDisk(agentproto.SerialRoot, 20*time.Second)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, newRoot, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount root %s: %w", dev, err)
	}
	if _, err := os.Lstat(newRoot + sbinInit); err != nil {
		return unsupportedf("init: systemd, but the rootfs has no %s (%v)", sbinInit, err)
	}
	if err := a.mountModulesIn(newRoot); err != nil {
		return err
	}
	if err := mountAll([]mountSpec{{"tmpfs", newRoot + "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"}}); err != nil {
		return err
	}
	if err := installGuest(newRoot); err != nil {
		return fmt.Errorf("install the guest side: %w", err)
	}
	a.setState(agentproto.StateRootMounted, "")
	// Free the initramfs's big files as switch_root does; the rest is tiny.
	os.Remove("/init")
	os.RemoveAll(agentproto.InitramfsModuleDir)
	if err := enterRoot(newRoot); err != nil {
		return err
	}
	a.logf("exec %s after %s", sbinInit, time.Since(a.start).Round(time.Millisecond))
	time.Sleep(50 * time.Millisecond) // let the log line leave before the channel closes
	err = unix.Exec(sbinInit, []string{sbinInit}, []string{"PATH=" + systemPath, "TERM=linux"})
	return fmt.Errorf("exec %s: %w", sbinInit, err)
}

// mountModulesIn mounts the kernel's module disk at <root>/lib/modules/<release>,
// following the rootfs's own /lib symlink (merged /usr).
func (a *agent) mountModulesIn(root string) error {
	if a.release == "" {
		return errors.New("unknown kernel release")
	}
	dev, err := findDisk(agentproto.SerialModules, 5*time.Second)
	if err != nil {
		return err
	}
	target, err := resolveIn(root, "/lib/modules/"+a.release, os.Readlink)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, target, "ext4", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount modules disk %s on %s: %w", dev, target, err)
	}
	return nil
}

// installGuest copies the running agent binary and writes the unit files under root.
func installGuest(root string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := copyFile(self, filepath.Join(root, guestBinary), 0o755); err != nil {
		return err
	}
	for rel, content := range guestFiles() {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
