package main

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/drivers"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// chooseDriver follows the storage-driver table: the default scratch
// filesystem when none is named, and unsupported (with the reason) for an
// unknown driver or a scratch filesystem the driver does not run on.
func TestChooseDriver(t *testing.T) {
	for _, name := range drivers.Names() {
		d, err := chooseDriver(agentproto.BootConfig{Driver: name})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		facts, _ := drivers.Lookup(name)
		if d.name != name || d.scratchFS != facts.ScratchDefault {
			t.Errorf("%s: chose %s on %s, want %s on %s", name, d.name, d.scratchFS, name, facts.ScratchDefault)
		}
		if d.scratchFS != "raw" {
			if _, ok := mkfs[d.scratchFS]; !ok {
				t.Errorf("%s: default scratch %s has no mkfs", name, d.scratchFS)
			}
		}
	}
	if d, err := chooseDriver(agentproto.BootConfig{}); err != nil || d.name != "overlay2" {
		t.Errorf("no driver named: %+v, %v; want overlay2", d, err)
	}
	if d, err := chooseDriver(agentproto.BootConfig{Driver: "overlay2", ScratchFS: "xfs"}); err != nil || d.scratchFS != "xfs" {
		t.Errorf("overlay2 on xfs: %+v, %v", d, err)
	}
	for _, bad := range []agentproto.BootConfig{{Driver: "lvm9"}, {Driver: "btrfs", ScratchFS: "ext4"}, {Driver: "devicemapper", ScratchFS: "xfs"}} {
		_, err := chooseDriver(bad)
		var u *unsupportedError
		if !errors.As(err, &u) || !strings.Contains(u.reason, bad.Driver) {
			t.Errorf("%+v: %v, want unsupported naming %s", bad, err, bad.Driver)
		}
	}
}

// The agent makes every scratch filesystem the table allows.
func TestMkfsCoversTheTable(t *testing.T) {
	for _, d := range drivers.All() {
		for _, fs := range d.ScratchAllowed {
			if _, ok := mkfs[fs]; !ok && fs != "raw" {
				t.Errorf("driver %s allows %s, which the agent cannot make", d.Name, fs)
			}
		}
	}
	if got := slices.Sorted(maps.Keys(mkfs)); !slices.Equal(got, []string{"btrfs", "ext4", "xfs"}) {
		t.Errorf("mkfs makes %v", got)
	}
}

func TestListsFilesystem(t *testing.T) {
	proc := []byte("nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n\txfs\n")
	for name, want := range map[string]bool{"overlay": true, "ext4": true, "xfs": true, "btrfs": false, "nodev": false, "": false} {
		if got := listsFilesystem(proc, name); got != want {
			t.Errorf("%q: %v, want %v", name, got, want)
		}
	}
}

func TestDriverStatusLine(t *testing.T) {
	info := `{"Driver":"devicemapper","DriverStatus":[["Pool Name","docker-thinpool"],["Udev Sync Supported","true"]],"ID":"x"}`
	got, err := driverStatusLine([]byte(info))
	want := "Storage Driver: devicemapper; Pool Name: docker-thinpool; Udev Sync Supported: true"
	if err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if _, err := driverStatusLine([]byte("<html>")); err == nil {
		t.Error("a reply that is not JSON gave no error")
	}
}

func TestMissingDockerUnit(t *testing.T) {
	for _, tt := range []struct {
		loadState string
		missing   bool
	}{{"loaded\n", false}, {"not-found\n", true}, {"", false}, {"masked", false}} {
		err := missingDockerUnit(tt.loadState)
		if (err != nil) != tt.missing {
			t.Errorf("missingDockerUnit(%q) = %v, want missing %v", tt.loadState, err, tt.missing)
		}
		if err != nil && !strings.Contains(err.Error(), "docker.service does not exist") {
			t.Errorf("reason %q does not say docker.service is missing", err)
		}
	}
}
