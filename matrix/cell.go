// Package matrix turns a matrix spec (matrix.yaml) into a plan: the expanded
// kernel × distro × docker × driver cells, each classified runnable or
// unsupported with a human reason, filtered and sharded.
//
// Everything in this package is pure: no I/O besides reading the spec file,
// and the same spec gives the same plan on every host. Anything that depends
// on the host (downloads, KVM, free ports) belongs in runner/.
//
// The API the CLI and the runner use:
//
//	spec, err := matrix.Load("matrix.yaml") // decode + validate; errors are *SpecError (file:line:column, key), joined
//	cells, err := spec.Plan()               // or matrix.Expand(spec): cells, runnable or unsupported with a reason
//	cells, err = matrix.Filter{Kernel: []string{"3.16"}, Driver: []string{"aufs"}}.Apply(cells) // *FilterError when nothing matches
//	cells, err = matrix.Shard(cells, i, n)  // shard i of n, 1-based
//	ok, reason := matrix.EvalKernelChecks(cell.Pending, kernelConfig, hasModule) // after the kernel package is downloaded
//
// The spec format is documented by example in the repository's matrix.yaml;
// the compatibility rules are the table in BuiltinRules, each row citing the
// public documents (Docker's docs and release history, kernel config symbols)
// its facts come from, through the storage-driver table in internal/drivers.
package matrix

import (
	"strings"
	"time"
)

// Status says whether a cell can be booted.
type Status string

// Cell statuses.
const (
	// StatusRunnable cells are booted by the runner. A runnable cell may still
	// carry Pending checks that can only be decided once its kernel package
	// has been downloaded and inspected.
	StatusRunnable Status = "runnable"
	// StatusUnsupported cells are never booted; Reason says why.
	StatusUnsupported Status = "unsupported"
)

// Cell is one kernel × distro × docker × driver combination.
type Cell struct {
	// ID is stable and readable, e.g. "k6.1-debian12-docker20.10.24-overlay2".
	ID     string    `json:"id"`
	Kernel KernelRef `json:"kernel"`
	Distro DistroRef `json:"distro"`
	Docker DockerRef `json:"docker"`
	Driver string    `json:"driver"`

	Status Status `json:"status"`
	// Reason is set for unsupported cells: the rule that excluded the cell and its source.
	Reason string `json:"reason,omitempty"`
	// Pending lists checks that cannot be decided before the kernel package is
	// inspected (for example "kernel ships the aufs module").
	Pending []KernelCheck `json:"pending,omitempty"`

	Settings Settings `json:"settings"`

	// ScratchMkfsArgs are extra mkfs arguments the compatibility rules require
	// for the scratch filesystem (e.g. "-n", "ftype=1" for overlay on xfs).
	ScratchMkfsArgs []string `json:"scratch_mkfs_args,omitempty"`
}

// KernelRef names a kernel and where it comes from: a Debian package from a
// suite, or local files.
type KernelRef struct {
	// Version is a release line or exact version as written in the spec ("6.1", "3.16.0").
	Version string `json:"version"`
	// Suite and Package select a Debian linux-image package (Package defaults
	// to linux-image-amd64, resolved to the versioned package).
	Suite   string `json:"suite,omitempty"`
	Package string `json:"package,omitempty"`
	// Vmlinuz and Modules point at a local kernel image and its module tree
	// (the directory that holds lib/modules/<release> or <release>/ itself).
	Vmlinuz string `json:"vmlinuz,omitempty"`
	Modules string `json:"modules,omitempty"`
	// Box names a Vagrant box for kernels that exist only as boxes.
	Box string `json:"box,omitempty"`
}

// DistroRef names the userland a cell's rootfs is built from.
type DistroRef struct {
	Name  string `json:"name"`  // e.g. "debian12"
	Suite string `json:"suite"` // e.g. "bookworm"
	// DockerIO is the upstream version of the suite's own docker.io package
	// ("" when unknown); the docker axis value "distro" resolves to it.
	DockerIO string `json:"docker_io,omitempty"`
}

// DockerRef names the Docker engine version installed in the rootfs.
type DockerRef struct {
	// Version is the upstream version, e.g. "20.10.24".
	Version string `json:"version"`
	// Package is the Debian package that provides it (docker.io).
	Package string `json:"package,omitempty"`
	// Suite is the Debian suite the package comes from.
	Suite string `json:"suite,omitempty"`
}

// KernelCheck is a compatibility check that needs the kernel package itself.
type KernelCheck struct {
	// Config options of which at least one must be =y or =m, e.g. CONFIG_AUFS_FS.
	AnyConfig []string `json:"any_config,omitempty"`
	// Module is a module name that must exist in the module tree, e.g. "aufs".
	Module string `json:"module,omitempty"`
	// Reason is the human reason reported when the check fails.
	Reason string `json:"reason"`
}

// Settings are the per-cell run settings from the spec.
type Settings struct {
	Probes   []string      `json:"probes"`
	Soak     time.Duration `json:"soak"`
	Repeats  int           `json:"repeats"`
	Timeout  time.Duration `json:"timeout"`
	CPUs     int           `json:"cpus"`
	MemoryMB int           `json:"memory_mb"`
	// ScratchFS overrides the backing filesystem of the scratch disk ("ext4",
	// "xfs", "btrfs"); empty means the driver's default.
	ScratchFS string `json:"scratch_fs,omitempty"`
	// CrashCheck asks for a power cut during writes and a re-verification after reboot.
	CrashCheck bool `json:"crash_check,omitempty"`
	// Faults are injected on purpose (fault-injection suite); empty in normal runs.
	Faults []string `json:"faults,omitempty"`
	// FaultProbability makes a fault of Faults probabilistic: it is injected
	// in a run with this probability (0 < p < 1), decided per run from the
	// run's fault seed (results.json fault_seed), so a run can be replayed.
	// A fault not in the map is injected in every run.
	FaultProbability map[string]float64 `json:"fault_probability,omitempty"`
	// Init is what runs as PID 1: "systemd" (the rootfs's own init starts
	// the distro's docker.service) or "agent" (matrixctl's agent starts
	// dockerd itself, for kernels or images without systemd). Empty: systemd.
	Init string `json:"init,omitempty"`
	// Cgroup is the cgroup layout: "distro" (what the distro's systemd
	// picks), "v1" or "v2". Empty: distro.
	Cgroup string `json:"cgroup,omitempty"`
	// Packages changes the rootfs's package set: the user's own choice of
	// a different host (not a harness change). Empty: the standard set.
	Packages PackageChanges `json:"packages,omitzero"`
}

// PackageChanges are Debian packages installed on top of the standard
// rootfs (Add) or removed from it (Remove, with whatever apt removes along
// with them, as `apt-get remove` on a real host does).
type PackageChanges struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Empty reports whether p changes nothing.
func (p PackageChanges) Empty() bool { return len(p.Add) == 0 && len(p.Remove) == 0 }

// String is "+strace -apparmor" (adds, then removes).
func (p PackageChanges) String() string {
	var parts []string
	for _, a := range p.Add {
		parts = append(parts, "+"+a)
	}
	for _, r := range p.Remove {
		parts = append(parts, "-"+r)
	}
	return strings.Join(parts, " ")
}
