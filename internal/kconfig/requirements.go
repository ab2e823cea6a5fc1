package kconfig

import (
	"fmt"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/internal/drivers"
)

// Host is what a cell asks of its kernel besides its storage driver: the
// init that boots the guest, the cgroup hierarchy and the LSM.
type Host struct {
	Init   string // InitSystemd or InitAgent
	Cgroup string // CgroupV1 or CgroupV2 (CgroupDistro resolved with DistroCgroup first); other values match no cgroup row
	LSM    string // LSMAppArmor, or "" for none asked
}

// Host values.
const (
	InitSystemd  = "systemd" // the distro's systemd is PID 1
	InitAgent    = "agent"   // the guest agent is PID 1
	CgroupV1     = "v1"
	CgroupV2     = "v2"
	CgroupDistro = "distro" // whatever the distro's systemd picks: see DistroCgroup
	LSMAppArmor  = "apparmor"
)

// legacyCgroupSuites are the Debian suites whose systemd boots with the
// cgroup v1 (hybrid) layout by default; bullseye (Debian 11) was the first
// to default to the unified cgroup v2 hierarchy.
var legacyCgroupSuites = []string{"wheezy", "jessie", "stretch", "buster"}

// DebianCgroupV2 is where Debian says bullseye switched systemd to cgroup v2.
var DebianCgroupV2 = drivers.Source{Title: "Debian 11 release notes: What's new", Section: "Control groups v2",
	URL: "https://www.debian.org/releases/bullseye/amd64/release-notes/ch-whats-new.en.html"}

// DistroCgroup is the cgroup hierarchy the distro of a Debian suite boots
// with by default: v1 before Debian 11 (bullseye), v2 from it on
// (DebianCgroupV2). Unknown suites are taken to be recent.
func DistroCgroup(suite string) string {
	if slices.Contains(legacyCgroupSuites, suite) {
		return CgroupV1
	}
	return CgroupV2
}

// Level says what a missing requirement does to a cell.
type Level string

const (
	// Essential: without it the cell cannot run; it is unsupported.
	Essential Level = "essential"
	// Optional: the cell runs without it; the run gets a warning.
	Optional Level = "optional"
)

// When is the condition under which a requirement applies: every field it
// sets must match the cell (empty fields match anything; the zero When
// applies always).
type When struct {
	Init, Cgroup, LSM, Driver string
}

func (w When) matches(h Host, driver string) bool {
	return (w.Init == "" || w.Init == h.Init) && (w.Cgroup == "" || w.Cgroup == h.Cgroup) &&
		(w.LSM == "" || w.LSM == h.LSM) && (w.Driver == "" || w.Driver == driver)
}

// String says when: "always", "init=systemd", "cgroup v2", "LSM apparmor", "driver overlay2".
func (w When) String() string {
	var parts []string
	for _, p := range [][2]string{{"init=", w.Init}, {"cgroup ", w.Cgroup}, {"LSM ", w.LSM}, {"driver ", w.Driver}} {
		if p[1] != "" {
			parts = append(parts, p[0]+p[1])
		}
	}
	if len(parts) == 0 {
		return "always"
	}
	return strings.Join(parts, ", ")
}

// Symbol is a kernel config symbol and, for a tristate, the module that
// provides it when it is built as one (=m).
type Symbol struct {
	Config string // CONFIG_VETH
	Module string // veth; "" for a bool symbol
}

// Requirement is one row of the table.
type Requirement struct {
	Feature string
	Symbols []Symbol
	// AnyOf: one of Symbols suffices; otherwise every one is needed.
	AnyOf  bool
	Level  Level
	When   When
	Source drivers.Source
}

// Sources of the table.
var (
	checkConfigURL = "https://github.com/moby/moby/blob/master/contrib/check-config.sh"
	// mobyNecessary and mobyOptional are the two lists of moby's check-config.sh.
	mobyNecessary = drivers.Source{Title: "moby contrib/check-config.sh", Section: "Generally Necessary", URL: checkConfigURL}
	mobyOptional  = drivers.Source{Title: "moby contrib/check-config.sh", Section: "Optional Features", URL: checkConfigURL}
	systemdReadme = drivers.Source{Title: "systemd README", Section: "REQUIREMENTS", URL: "https://github.com/systemd/systemd/blob/main/README"}
	cgroupV2Devs  = drivers.Source{Title: "Linux kernel docs: Control Group v2", Section: "Device controller",
		URL: "https://docs.kernel.org/admin-guide/cgroup-v2.html#device-controller"}
	apparmorDoc = drivers.Source{Title: "Linux kernel docs: AppArmor", Section: "How to enable/disable",
		URL: "https://docs.kernel.org/admin-guide/LSM/apparmor.html"}
	seccompDoc = drivers.Source{Title: "Docker docs: Seccomp security profiles for Docker",
		URL: "https://docs.docker.com/engine/security/seccomp/"}
)

// moduleOf names the module of each tristate symbol of the table that is
// not a storage driver's (those come with their module from
// internal/drivers). The test against a real Debian config fails when a
// symbol of the table is =m there and has no module here.
var moduleOf = map[string]string{
	"CONFIG_VETH":                         "veth",
	"CONFIG_BRIDGE":                       "bridge",
	"CONFIG_BRIDGE_NETFILTER":             "br_netfilter",
	"CONFIG_IP_NF_FILTER":                 "iptable_filter",
	"CONFIG_IP_NF_TARGET_MASQUERADE":      "xt_MASQUERADE", // selects NETFILTER_XT_TARGET_MASQUERADE: no ipt_MASQUERADE since 5.x
	"CONFIG_NETFILTER_XT_MATCH_ADDRTYPE":  "xt_addrtype",
	"CONFIG_NETFILTER_XT_MATCH_CONNTRACK": "xt_conntrack",
	"CONFIG_NF_NAT":                       "nf_nat",
	"CONFIG_UNIX":                         "unix",
}

// syms lists config symbols with their modules from moduleOf.
func syms(names ...string) []Symbol {
	out := make([]Symbol, len(names))
	for i, n := range names {
		out[i] = Symbol{Config: n, Module: moduleOf[n]}
	}
	return out
}

// requirements is the table, without the storage drivers' rows (driverRows).
var requirements = []Requirement{
	{Feature: "namespaces", Symbols: syms("CONFIG_NAMESPACES", "CONFIG_NET_NS", "CONFIG_PID_NS", "CONFIG_IPC_NS", "CONFIG_UTS_NS"),
		Level: Essential, Source: mobyNecessary},
	{Feature: "cgroups (cpu, cpuset, memory controllers)", Symbols: syms("CONFIG_CGROUPS", "CONFIG_CGROUP_SCHED", "CONFIG_CPUSETS", "CONFIG_MEMCG"),
		Level: Essential, Source: mobyNecessary},
	{Feature: "cgroup v1 controllers (cpuacct, devices, freezer)", Symbols: syms("CONFIG_CGROUP_CPUACCT", "CONFIG_CGROUP_DEVICE", "CONFIG_CGROUP_FREEZER"),
		Level: Essential, When: When{Cgroup: CgroupV1}, Source: mobyNecessary},
	{Feature: "cgroup v2 device control (a BPF program per cgroup)", Symbols: syms("CONFIG_CGROUP_BPF"),
		Level: Essential, When: When{Cgroup: CgroupV2}, Source: cgroupV2Devs},
	{Feature: "keyrings (session keyring per container)", Symbols: syms("CONFIG_KEYS"),
		Level: Essential, Source: mobyNecessary},
	{Feature: "container networking (veth pairs on a bridge, filtered by iptables)", Symbols: syms("CONFIG_VETH", "CONFIG_BRIDGE", "CONFIG_BRIDGE_NETFILTER"),
		Level: Essential, Source: mobyNecessary},
	{Feature: "iptables NAT and filtering (published ports, outbound masquerading)",
		Symbols: syms("CONFIG_IP_NF_FILTER", "CONFIG_IP_NF_TARGET_MASQUERADE", "CONFIG_NETFILTER_XT_MATCH_ADDRTYPE", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK", "CONFIG_NF_NAT"),
		Level:   Essential, Source: mobyNecessary},
	{Feature: "POSIX message queues (IPC namespaces)", Symbols: syms("CONFIG_POSIX_MQUEUE"),
		Level: Essential, Source: mobyNecessary},
	{Feature: "seccomp profiles (dockerd runs containers unconfined without them)", Symbols: syms("CONFIG_SECCOMP", "CONFIG_SECCOMP_FILTER"),
		Level: Optional, Source: seccompDoc},
	{Feature: "AppArmor (the cell confines containers with docker-default)", Symbols: syms("CONFIG_SECURITY_APPARMOR"),
		Level: Essential, When: When{LSM: LSMAppArmor}, Source: apparmorDoc},
	// CONFIG_CGROUPS, also on systemd's list, is in the cgroups row.
	{Feature: "systemd as init",
		Symbols: syms("CONFIG_DEVTMPFS", "CONFIG_INOTIFY_USER", "CONFIG_SIGNALFD", "CONFIG_TIMERFD", "CONFIG_EPOLL", "CONFIG_UNIX",
			"CONFIG_SYSFS", "CONFIG_PROC_FS", "CONFIG_FHANDLE"),
		Level: Essential, When: When{Init: InitSystemd}, Source: systemdReadme},
}

// driverRows are the kernel needs of the storage driver from
// internal/drivers' table, one essential row per need.
func driverRows(driver string) []Requirement {
	d, ok := drivers.Lookup(driver)
	if !ok {
		return nil
	}
	var out []Requirement
	for _, k := range d.Kernel {
		out = append(out, Requirement{Feature: "the " + d.Name + " storage driver", Symbols: []Symbol{{Config: k.Config, Module: k.Module}},
			Level: Essential, When: When{Driver: d.Name}, Source: k.Source})
	}
	return out
}

// Table is the requirements table with the rows of every storage driver,
// for listing; Check picks the rows that apply to a cell.
func Table() []Requirement {
	out := slices.Clone(requirements)
	for _, d := range drivers.Names() {
		out = append(out, driverRows(d)...)
	}
	return out
}

// Unmet is a requirement the kernel does not meet, with why, per symbol.
type Unmet struct {
	Requirement
	Missing []string // "CONFIG_VETH is not set", "CONFIG_VETH=m but module veth is not in the module tree"
}

// String names the feature, what is missing and the source:
// "container networking (…) needs CONFIG_VETH: CONFIG_VETH is not set [moby contrib/check-config.sh § Generally Necessary, https://…]".
func (u Unmet) String() string {
	names := make([]string, len(u.Symbols))
	for i, s := range u.Symbols {
		names[i] = s.Config
	}
	join := ", "
	if u.AnyOf {
		join = " or "
	}
	return fmt.Sprintf("%s needs %s: %s [%s]", u.Feature, strings.Join(names, join), strings.Join(u.Missing, "; "), u.Source)
}

// Result is what Check found: the essential and the optional requirements
// the kernel does not meet.
type Result struct {
	Essential, Optional []Unmet
}

// OK reports whether every essential requirement is met.
func (r Result) OK() bool { return len(r.Essential) == 0 }

// Reason joins the unmet essential requirements, "; "-separated.
func (r Result) Reason() string { return joinUnmet(r.Essential) }

// Warnings lists the unmet optional requirements, one line each.
func (r Result) Warnings() []string {
	out := make([]string, len(r.Optional))
	for i, u := range r.Optional {
		out[i] = u.String()
	}
	return out
}

func joinUnmet(us []Unmet) string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = u.String()
	}
	return strings.Join(parts, "; ")
}

// Check decides the table's rows that apply to a cell of host h and the
// storage driver against a kernel's config and its module tree (hasModule;
// nil: no modules). A symbol is met when it is =y, or when its module is in
// the tree (=m, or an out-of-tree module such as zfs); =m without the
// module file is not met.
func Check(cfg Config, hasModule func(string) bool, h Host, driver string) Result {
	var r Result
	for _, req := range append(slices.Clone(requirements), driverRows(driver)...) {
		if !req.When.matches(h, driver) {
			continue
		}
		var missing []string
		for _, s := range req.Symbols {
			if why := unmet(cfg, hasModule, s); why != "" {
				missing = append(missing, why)
			}
		}
		if len(missing) == 0 || req.AnyOf && len(missing) < len(req.Symbols) {
			continue
		}
		u := Unmet{Requirement: req, Missing: missing}
		if req.Level == Essential {
			r.Essential = append(r.Essential, u)
		} else {
			r.Optional = append(r.Optional, u)
		}
	}
	return r
}

// unmet says why s is not usable, "" when it is.
func unmet(cfg Config, hasModule func(string) bool, s Symbol) string {
	v, set := cfg[s.Config]
	switch {
	case v == Yes:
		return ""
	case s.Module != "" && hasModule != nil && hasModule(s.Module):
		return ""
	case v == Module && s.Module == "":
		return "" // a tristate the table names no module for: trust the config
	case v == Module:
		return fmt.Sprintf("%s=m but module %s is not in the module tree", s.Config, s.Module)
	case !set:
		return s.Config + " is not in the config"
	case v == No:
		return s.Config + " is not set"
	default:
		return fmt.Sprintf("%s=%s", s.Config, v)
	}
}
