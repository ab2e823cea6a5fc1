package matrix

import "github.com/matrixctl/matrixctl/internal/drivers"

// Closed vocabularies and built-in facts the spec is checked against. They
// are functions returning fresh values (not mutable package globals), so a
// caller can never change the tables for everyone else.

// Axis names, in the order they appear in cell IDs and tables.
const (
	AxisKernel = "kernel"
	AxisDistro = "distro"
	AxisDocker = "docker"
	AxisDriver = "driver"
)

// AxisNames lists the four axis names in display order.
func AxisNames() []string { return []string{AxisKernel, AxisDistro, AxisDocker, AxisDriver} }

// DockerFromDistro is the docker axis value meaning "the docker.io package of
// the cell's own distro".
const DockerFromDistro = "distro"

// Drivers are the storage drivers a cell may use: those of the storage-driver
// table (internal/drivers).
func Drivers() []string { return drivers.Names() }

// Probes are the probe kinds a cell may run (probes/).
func Probes() []string { return []string{"io", "net", "churn"} }

// ScratchFilesystems are the backing filesystems the runner can create for
// /var/lib/docker.
func ScratchFilesystems() []string { return []string{"ext4", "xfs", "btrfs"} }

// Inits are what can run as a cell's PID 1 (setting init).
func Inits() []string { return []string{InitSystemd, InitAgent} }

// DefaultInit is the init of a cell whose spec names none: the distro's
// own systemd, as on a standard install (agentproto.DefaultInit); its cell
// IDs carry no init suffix, agent cells carry "-init-agent".
const DefaultInit = InitSystemd

// Cgroups are the cgroup layouts a cell can ask for (setting cgroup); the first is the default.
func Cgroups() []string { return []string{CgroupDistro, "v1", "v2"} }

// Default and named values of the init and cgroup settings.
const (
	InitSystemd  = "systemd"
	InitAgent    = "agent"
	CgroupDistro = "distro"
)

// Faults are the fault injections the runner implements (DESIGN.md, "Real
// fault injection that works without extra kernel features").
func Faults() []string {
	return []string{"sysrq-panic", "hung-task", "blkdebug-eio", "flip-bytes", "flip-data", "power-cut", "sigstop", "kill-dockerd"}
}

// debianRelease is one row of the built-in distro table.
type debianRelease struct {
	Name  string // distro axis name
	Suite string // Debian suite the rootfs is built from
	// Docker is the upstream version of the suite's docker.io package
	// (Debian archive; DESIGN.md "docker.io 20.10.5 (11), 20.10.24 (12), 26.1.5 (13)").
	Docker string
}

// debianReleases is the built-in distro table: name → suite → docker.io version.
func debianReleases() []debianRelease {
	return []debianRelease{
		{Name: "debian11", Suite: "bullseye", Docker: "20.10.5"},
		{Name: "debian12", Suite: "bookworm", Docker: "20.10.24"},
		{Name: "debian13", Suite: "trixie", Docker: "26.1.5"},
	}
}

// releaseByName looks a distro name up in the built-in table.
func releaseByName(name string) (debianRelease, bool) {
	for _, r := range debianReleases() {
		if r.Name == name {
			return r, true
		}
	}
	return debianRelease{}, false
}

// releaseBySuite looks a suite up in the built-in table.
func releaseBySuite(suite string) (debianRelease, bool) {
	for _, r := range debianReleases() {
		if r.Suite == suite {
			return r, true
		}
	}
	return debianRelease{}, false
}

// debianSuites are the suite code names a kernel or distro may name; a
// suite may carry a -backports, -updates or -security suffix.
func debianSuites() []string {
	return []string{"jessie", "stretch", "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "unstable", "testing", "stable", "oldstable"}
}
