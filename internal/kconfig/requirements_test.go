package kconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/drivers"
)

// debianLike is a config with every symbol of the table built in, except
// the networking ones built as modules (as Debian builds them).
func debianLike() (Config, Modules) {
	cfg, mods := Config{}, Modules{}
	for _, r := range Table() {
		for _, s := range r.Symbols {
			if s.Module != "" {
				cfg[s.Config] = Module
				mods[s.Module] = true
			} else {
				cfg[s.Config] = Yes
			}
		}
	}
	delete(cfg, "CONFIG_AUFS_FS")
	delete(mods, "aufs")
	delete(cfg, "CONFIG_ZFS")
	delete(mods, "zfs")
	return cfg, mods
}

var debianHost = Host{Init: InitSystemd, Cgroup: CgroupV2, LSM: LSMAppArmor}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		change func(Config, Modules)
		host   Host
		driver string
		// essential and optional are substrings of Reason and of the one
		// warning; "" wants none.
		essential, optional string
	}{
		{name: "debian-like", host: debianHost, driver: "overlay2"},
		{name: "veth not set", change: func(c Config, m Modules) { c["CONFIG_VETH"] = No; delete(m, "veth") }, host: debianHost, driver: "overlay2",
			essential: "container networking (veth pairs on a bridge, filtered by iptables) needs CONFIG_VETH, CONFIG_BRIDGE, CONFIG_BRIDGE_NETFILTER: CONFIG_VETH is not set [moby contrib/check-config.sh § Generally Necessary, https://github.com/moby/moby/blob/master/contrib/check-config.sh]"},
		{name: "br_netfilter =m without its module", change: func(_ Config, m Modules) { delete(m, "br_netfilter") }, host: debianHost, driver: "vfs",
			essential: "CONFIG_BRIDGE_NETFILTER=m but module br_netfilter is not in the module tree"},
		{name: "symbol absent", change: func(c Config, _ Modules) { delete(c, "CONFIG_KEYS") }, host: debianHost, driver: "vfs",
			essential: "keyrings (session keyring per container) needs CONFIG_KEYS: CONFIG_KEYS is not in the config"},
		{name: "no seccomp is a warning", change: func(c Config, _ Modules) { c["CONFIG_SECCOMP_FILTER"] = No }, host: debianHost, driver: "overlay2",
			optional: "seccomp profiles (dockerd runs containers unconfined without them) needs CONFIG_SECCOMP, CONFIG_SECCOMP_FILTER: CONFIG_SECCOMP_FILTER is not set [Docker docs: Seccomp security profiles for Docker, https://docs.docker.com/engine/security/seccomp/]"},
		{name: "cgroup v2 needs BPF", change: func(c Config, _ Modules) { c["CONFIG_CGROUP_BPF"] = No }, host: debianHost, driver: "overlay2",
			essential: "cgroup v2 device control (a BPF program per cgroup) needs CONFIG_CGROUP_BPF: CONFIG_CGROUP_BPF is not set [Linux kernel docs: Control Group v2 § Device controller"},
		{name: "cgroup v1 does not", change: func(c Config, _ Modules) { c["CONFIG_CGROUP_BPF"] = No }, host: Host{Init: InitSystemd, Cgroup: CgroupV1}, driver: "overlay2"},
		{name: "cgroup v1 needs the devices controller", change: func(c Config, _ Modules) { c["CONFIG_CGROUP_DEVICE"] = No }, host: Host{Init: InitSystemd, Cgroup: CgroupV1}, driver: "overlay2",
			essential: "cgroup v1 controllers (cpuacct, devices, freezer) needs CONFIG_CGROUP_CPUACCT, CONFIG_CGROUP_DEVICE, CONFIG_CGROUP_FREEZER: CONFIG_CGROUP_DEVICE is not set"},
		{name: "cgroup v2 does not", change: func(c Config, _ Modules) { c["CONFIG_CGROUP_DEVICE"] = No }, host: debianHost, driver: "overlay2"},
		{name: "systemd needs fhandle", change: func(c Config, _ Modules) { delete(c, "CONFIG_FHANDLE") }, host: debianHost, driver: "overlay2",
			essential: "systemd as init needs CONFIG_DEVTMPFS, CONFIG_INOTIFY_USER, CONFIG_SIGNALFD, CONFIG_TIMERFD, CONFIG_EPOLL, CONFIG_UNIX, CONFIG_SYSFS, CONFIG_PROC_FS, CONFIG_FHANDLE: CONFIG_FHANDLE is not in the config [systemd README § REQUIREMENTS, https://github.com/systemd/systemd/blob/main/README]"},
		{name: "the agent does not", change: func(c Config, _ Modules) { delete(c, "CONFIG_FHANDLE") }, host: Host{Init: InitAgent, Cgroup: CgroupV2}, driver: "overlay2"},
		{name: "apparmor asked", change: func(c Config, _ Modules) { c["CONFIG_SECURITY_APPARMOR"] = No }, host: debianHost, driver: "overlay2",
			essential: "AppArmor (the cell confines containers with docker-default) needs CONFIG_SECURITY_APPARMOR: CONFIG_SECURITY_APPARMOR is not set"},
		{name: "apparmor not asked", change: func(c Config, _ Modules) { c["CONFIG_SECURITY_APPARMOR"] = No }, host: Host{Init: InitSystemd, Cgroup: CgroupV2}, driver: "overlay2"},
		{name: "overlay2 without overlay", change: func(_ Config, m Modules) { delete(m, "overlay") }, host: debianHost, driver: "overlay2",
			essential: "the overlay2 storage driver needs CONFIG_OVERLAY_FS: CONFIG_OVERLAY_FS=m but module overlay is not in the module tree [moby contrib/check-config.sh at v20.10.0 § Storage Drivers"},
		{name: "vfs needs no filesystem", change: func(c Config, m Modules) { delete(c, "CONFIG_OVERLAY_FS"); delete(m, "overlay") }, host: debianHost, driver: "vfs"},
		{name: "aufs", host: debianHost, driver: "aufs",
			essential: "the aufs storage driver needs CONFIG_AUFS_FS: CONFIG_AUFS_FS is not in the config"},
		{name: "devicemapper without dm-thin", change: func(c Config, m Modules) { c["CONFIG_DM_THIN_PROVISIONING"] = No; delete(m, "dm_thin_pool") }, host: debianHost, driver: "devicemapper",
			essential: "the devicemapper storage driver needs CONFIG_DM_THIN_PROVISIONING: CONFIG_DM_THIN_PROVISIONING is not set"},
		{name: "out-of-tree module (aufs-dkms)", change: func(c Config, m Modules) { c["CONFIG_AUFS_FS"] = No; m["aufs"] = true }, host: debianHost, driver: "aufs"},
		{name: "out-of-tree zfs module", change: func(_ Config, m Modules) { m["zfs"] = true }, host: debianHost, driver: "zfs"},
		{name: "two essentials, one reason", change: func(c Config, _ Modules) { c["CONFIG_KEYS"] = No; c["CONFIG_PID_NS"] = No }, host: debianHost, driver: "overlay2",
			essential: "namespaces needs CONFIG_NAMESPACES, CONFIG_NET_NS, CONFIG_PID_NS, CONFIG_IPC_NS, CONFIG_UTS_NS: CONFIG_PID_NS is not set [moby contrib/check-config.sh § Generally Necessary, https://github.com/moby/moby/blob/master/contrib/check-config.sh]; keyrings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, mods := debianLike()
			if tc.change != nil {
				tc.change(cfg, mods)
			}
			r := Check(cfg, mods.Has, tc.host, tc.driver)
			if got := r.Reason(); tc.essential == "" && !r.OK() || tc.essential != "" && (r.OK() || !strings.Contains(got, tc.essential)) {
				t.Errorf("reason %q\nwant %q", got, tc.essential)
			}
			switch w := r.Warnings(); {
			case tc.optional == "" && len(w) > 0:
				t.Errorf("warnings %q, want none", w)
			case tc.optional != "" && (len(w) != 1 || !strings.Contains(w[0], tc.optional)):
				t.Errorf("warnings %q\nwant %q", w, tc.optional)
			}
		})
	}
}

func TestAnyOf(t *testing.T) {
	saved := requirements
	t.Cleanup(func() { requirements = saved })
	requirements = []Requirement{{Feature: "iptables", Symbols: syms("CONFIG_IP_NF_FILTER", "CONFIG_NFT_COMPAT"), AnyOf: true, Level: Essential}}
	if r := Check(Config{"CONFIG_NFT_COMPAT": Yes}, nil, debianHost, "vfs"); !r.OK() {
		t.Errorf("one of two: %s", r.Reason())
	}
	r := Check(Config{"CONFIG_IP_NF_FILTER": Module}, nil, debianHost, "vfs")
	if want := "iptables needs CONFIG_IP_NF_FILTER or CONFIG_NFT_COMPAT: CONFIG_IP_NF_FILTER=m but module iptable_filter is not in the module tree; CONFIG_NFT_COMPAT is not in the config"; !strings.HasPrefix(r.Reason(), want) {
		t.Errorf("reason %q\nwant %q", r.Reason(), want)
	}
}

func TestTableRows(t *testing.T) {
	for _, r := range Table() {
		if r.Feature == "" || len(r.Symbols) == 0 || r.Source.URL == "" || r.Level != Essential && r.Level != Optional {
			t.Errorf("row %+v: wants a feature, symbols, a level and a source with a URL", r)
		}
		for _, s := range r.Symbols {
			if !isSymbol(s.Config) {
				t.Errorf("row %q: %q is not a CONFIG_ symbol", r.Feature, s.Config)
			}
		}
	}
	for _, d := range drivers.All() {
		for _, k := range d.Kernel {
			if !strings.Contains(joinUnmet(Check(Config{}, nil, Host{}, d.Name).Essential), k.Config) {
				t.Errorf("driver %s: its need %s is not checked", d.Name, k.Config)
			}
		}
	}
}

func TestDistroCgroup(t *testing.T) {
	for suite, want := range map[string]string{"buster": CgroupV1, "stretch": CgroupV1, "bullseye": CgroupV2, "bookworm": CgroupV2, "trixie": CgroupV2, "": CgroupV2} {
		if got := DistroCgroup(suite); got != want {
			t.Errorf("%q: %s, want %s", suite, got, want)
		}
	}
}

// TestDebianKernels checks the kernels internal/images imported into
// MATRIXCTL_CACHE (their config and module tree): an overlay2 cell under
// systemd, cgroup v2 and AppArmor meets every row; aufs does not; and
// every symbol of the table that Debian builds as a module names its
// module, which the tree has.
func TestDebianKernels(t *testing.T) {
	cache := os.Getenv("MATRIXCTL_CACHE")
	if cache == "" {
		t.Skip("MATRIXCTL_CACHE is not set: no imported kernels to check")
	}
	configs, _ := filepath.Glob(filepath.Join(cache, "kernels", "*", "config"))
	if len(configs) == 0 {
		t.Skipf("no kernel imported in %s/kernels yet (matrixctl run imports them)", cache)
	}
	for _, path := range configs {
		dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "root", "lib", "modules", "*"))
		if len(dirs) != 1 {
			t.Errorf("%s: want one module tree beside it, have %v", path, dirs)
			continue
		}
		t.Run(filepath.Base(dirs[0]), func(t *testing.T) {
			cfg, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			mods, err := ReadModules(dirs[0])
			if err != nil || len(mods) < 1000 {
				t.Fatalf("module tree: %d modules, %v", len(mods), err)
			}
			for _, h := range []Host{debianHost, {Init: InitAgent, Cgroup: CgroupV1}} {
				for _, driver := range []string{"overlay2", "overlay", "vfs", "btrfs", "devicemapper", "fuse-overlayfs"} {
					if r := Check(cfg, mods.Has, h, driver); !r.OK() || len(r.Optional) > 0 {
						t.Errorf("%+v %s: %s %q", h, driver, r.Reason(), r.Warnings())
					}
				}
			}
			if r := Check(cfg, mods.Has, debianHost, "aufs"); r.OK() || !strings.Contains(r.Reason(), "CONFIG_AUFS_FS is not in the config") {
				t.Errorf("aufs: %q", r.Reason())
			}
			for _, r := range Table() {
				for _, s := range r.Symbols {
					if cfg[s.Config] == Module && (s.Module == "" || !mods.Has(s.Module)) {
						t.Errorf("%s=m: the table names module %q, the tree has it: %v", s.Config, s.Module, mods.Has(s.Module))
					}
				}
			}
		})
	}
}
