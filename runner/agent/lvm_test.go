package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// The devicemapper set-up per init: under systemd Docker's direct-lvm
// guide step by step, with udev sync; under the agent init (no udev) the
// dmsetup pool with the udev-sync override.
func TestDevicemapperPerInit(t *testing.T) {
	spec, _ := lookupDriver("devicemapper")
	cases := []struct {
		init      string
		byLVM     bool
		opts      []string // daemon.json storage-opts (systemd) or dockerd flags (agent)
		forbid    []string
		checkedFS string
	}{
		{init: agentproto.InitSystemd, byLVM: true,
			opts:      []string{"dm.thinpooldev=/dev/mapper/docker-thinpool", "dm.use_deferred_removal=true", "dm.use_deferred_deletion=true"},
			forbid:    []string{"override_udev_sync_check", "mx-thinpool"},
			checkedFS: "lvm-thin"},
		{init: agentproto.InitAgent, byLVM: false,
			opts: []string{"--storage-opt", "dm.thinpooldev=/dev/mapper/mx-thinpool", "--storage-opt", "dm.override_udev_sync_check=true",
				"--storage-opt", "dm.use_deferred_removal=false", "--storage-opt", "dm.use_deferred_deletion=false"},
			checkedFS: "thin"},
	}
	for _, c := range cases {
		t.Run(c.init, func(t *testing.T) {
			cfg := agentproto.BootConfig{Driver: "devicemapper", ScratchFS: "raw", Init: c.init}
			if got := cfg.ThinPoolByLVM(); got != c.byLVM {
				t.Errorf("ThinPoolByLVM = %v, want %v", got, c.byLVM)
			}
			if got := cfg.CheckedFS(); got != c.checkedFS {
				t.Errorf("CheckedFS = %q, want %q", got, c.checkedFS)
			}
			var got []string
			if c.byLVM {
				got = spec.daemonOpts()
			} else {
				got = spec.opts("/dev/vdc")
			}
			if !slices.Equal(got, c.opts) {
				t.Errorf("opts %q, want %q", got, c.opts)
			}
			for _, f := range c.forbid {
				if strings.Contains(strings.Join(got, " "), f) {
					t.Errorf("opts %q contain %s", got, f)
				}
			}
		})
	}
}

func TestDirectLVMSteps(t *testing.T) {
	cmd := func(argv ...string) lvmStep { return lvmStep{argv: argv} }
	profile := lvmStep{path: "/etc/lvm/profile/docker-thinpool.profile", content: lvmProfile}
	cases := []struct {
		name  string
		reuse bool
		want  []lvmStep
	}{
		{"fresh disk: the guide's steps in order", false, []lvmStep{
			cmd("pvcreate", "/dev/vdc"),
			cmd("vgcreate", "docker", "/dev/vdc"),
			cmd("lvcreate", "--wipesignatures", "y", "-n", "thinpool", "docker", "-l", "95%VG"),
			cmd("lvcreate", "--wipesignatures", "y", "-n", "thinpoolmeta", "docker", "-l", "1%VG"),
			cmd("lvconvert", "-y", "--zero", "n", "-c", "512K", "--thinpool", "docker/thinpool", "--poolmetadata", "docker/thinpoolmeta"),
			profile,
			cmd("lvchange", "--metadataprofile", "docker-thinpool", "docker/thinpool"),
		}},
		{"second boot on the same disk: profile again, activate", true, []lvmStep{
			profile,
			cmd("vgchange", "-ay", "docker"),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := directLVMSteps("/dev/vdc", c.reuse)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("steps\n got %q\nwant %q", got, c.want)
			}
			for _, s := range got {
				if slices.Contains(s.argv, "--noudevsync") {
					t.Errorf("%q: no udev-sync override under systemd", s.argv)
				}
			}
		})
	}
}

// The profile is the guide's, with the autoextend settings in the
// activation section.
func TestLVMProfile(t *testing.T) {
	want := "activation {\n  thin_pool_autoextend_threshold=80\n  thin_pool_autoextend_percent=20\n}\n"
	if lvmProfile != want {
		t.Errorf("profile\n%s\nwant\n%s", lvmProfile, want)
	}
}

func TestMonitored(t *testing.T) {
	cases := []struct {
		name, out string
		want      bool
	}{
		{"monitored", "  LV       VG     Attr       LSize  Pool Origin Data%  Meta%  Move Log Cpy%Sync Convert Monitor\n" +
			"  thinpool docker twi-a-t--- <9.50g             0.00   0.15                             monitored", true},
		{"not monitored", "  LV       VG     Attr       LSize  Pool Origin Data%  Meta%  Move Log Cpy%Sync Convert Monitor\n" +
			"  thinpool docker twi-a-t--- <9.50g             0.00   0.15                             not monitored", false},
		{"header only", "  LV VG Attr LSize Monitor", false},
		{"empty", "", false},
	}
	for _, c := range cases {
		if got := monitored(c.out); got != c.want {
			t.Errorf("%s: monitored = %v, want %v", c.name, got, c.want)
		}
	}
}
