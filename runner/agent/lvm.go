package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The devicemapper thin pool under init: systemd is made the way Docker's
// devicemapper guide tells users to, "Configure direct-lvm mode manually"
// (https://docs.docker.com/engine/storage/drivers/device-mapper-driver/#configure-direct-lvm-mode-manually):
// an LVM thin pool docker/thinpool on the scratch disk, autoextended by
// dmeventd through an LVM profile, with udev sync (LVM's default) since the
// distro's udev runs. The agent init has no udev and keeps dmsetup (thinPool).
const (
	lvmVG          = "docker"
	lvmPool        = lvmVG + "/thinpool"
	lvmPoolDev     = "/dev/mapper/docker-thinpool"
	lvmProfileName = "docker-thinpool"
	lvmProfilePath = "/etc/lvm/profile/" + lvmProfileName + ".profile"
)

// lvmProfile is the guide's /etc/lvm/profile/docker-thinpool.profile:
// extend the pool by 20% when it is 80% full.
const lvmProfile = `activation {
  thin_pool_autoextend_threshold=80
  thin_pool_autoextend_percent=20
}
`

// lvmStep is one step of the guide: a command, or (argv nil) a file to write.
type lvmStep struct {
	argv          []string
	path, content string
}

// directLVMSteps are the guide's steps for a thin pool on dev, in its
// order. reuse is a second boot on the same scratch disk (after a power
// cut): the volume group and pool are there already; the root disk is a
// fresh snapshot, so the profile the pool refers to is written again and
// the volume group activated.
func directLVMSteps(dev string, reuse bool) []lvmStep {
	profile := lvmStep{path: lvmProfilePath, content: lvmProfile}
	if reuse {
		return []lvmStep{profile, {argv: []string{"vgchange", "-ay", lvmVG}}}
	}
	return []lvmStep{
		{argv: []string{"pvcreate", dev}},
		{argv: []string{"vgcreate", lvmVG, dev}},
		{argv: []string{"lvcreate", "--wipesignatures", "y", "-n", "thinpool", lvmVG, "-l", "95%VG"}},
		{argv: []string{"lvcreate", "--wipesignatures", "y", "-n", "thinpoolmeta", lvmVG, "-l", "1%VG"}},
		{argv: []string{"lvconvert", "-y", "--zero", "n", "-c", "512K", "--thinpool", lvmPool, "--poolmetadata", lvmVG + "/thinpoolmeta"}},
		profile,
		{argv: []string{"lvchange", "--metadataprofile", lvmProfileName, lvmPool}},
	}
}

// lvmThinPool makes the pool on dev with the guide's steps and checks, as
// the guide does, that dmeventd monitors it (without monitoring the
// profile's autoextend never happens).
func (a *agent) lvmThinPool(dev string) error {
	for _, s := range directLVMSteps(dev, a.cfg.ReuseScratch) {
		if s.argv == nil {
			if err := writeFile(s.path, s.content); err != nil {
				return fmt.Errorf("direct-lvm thin pool: %w", err)
			}
			a.logf("wrote %s", s.path)
			continue
		}
		out, err := a.runCmd(120*time.Second, s.argv...)
		if err != nil {
			return fmt.Errorf("direct-lvm thin pool: %w", err)
		}
		a.logf("%s: %s", strings.Join(s.argv, " "), strings.Join(strings.Fields(out), " "))
	}
	if err := a.lvmMonitored(); err != nil {
		return fmt.Errorf("direct-lvm thin pool: %w", err)
	}
	if _, err := os.Stat(lvmPoolDev); err != nil {
		return fmt.Errorf("direct-lvm thin pool: %w", err)
	}
	return nil
}

// lvmMonitored is the guide's monitoring step: lvs -o+seg_monitor, and
// lvchange --monitor y if the pool is not monitored.
func (a *agent) lvmMonitored() error {
	lvs := []string{"lvs", "-o+seg_monitor", lvmPool}
	for try := 0; ; try++ {
		out, err := a.runCmd(60*time.Second, lvs...)
		if err != nil {
			return err
		}
		a.logf("%s:\n%s", strings.Join(lvs, " "), out)
		if monitored(out) {
			return nil
		}
		if try > 0 {
			return fmt.Errorf("%s stays not monitored after lvchange --monitor y: %s", lvmPool, out)
		}
		if out, err := a.runCmd(60*time.Second, "lvchange", "--monitor", "y", lvmPool); err != nil {
			return fmt.Errorf("%w (%s)", err, out)
		}
	}
}

// monitored reads lvs -o+seg_monitor output for one LV: its row ends in
// the Monitor column, "monitored" or "not monitored".
func monitored(lvsOutput string) bool {
	lines := strings.Split(strings.TrimSpace(lvsOutput), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(lines) < 2 || len(f) < 2 {
		return false
	}
	return f[len(f)-1] == "monitored" && f[len(f)-2] != "not"
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
