// Package drivers is the one table of Docker storage-driver facts: for each
// driver the kernel modules and config symbols it needs, its name in
// /proc/filesystems, the scratch filesystems it runs on, what the host
// checker examines afterwards, and the Docker releases that added,
// deprecated and removed it. Each fact cites a public source a user can
// open (Docker's documentation, its deprecated-features page, release notes
// or source tree, or a kernel config symbol).
//
// The compatibility rules (matrix), the guest agent (runner/agent), the
// providers (runner/qemu, runner/vagrant) and the host checker all read
// this table. It lives in its own leaf package, importing nothing of this
// project and nothing outside the standard library, because its readers
// cannot import each other: matrix must not import the runner, and the
// guest agent is a static binary that should not pull in matrix's YAML and
// version-constraint dependencies.
package drivers

import (
	"slices"
	"strings"
)

// Raw is the scratch "filesystem" of the block-device drivers: the driver
// takes the disk itself (a devicemapper thin pool, a zpool).
const Raw = "raw"

// Source is a public document a fact comes from.
type Source struct {
	Title   string // the page or document, as its publisher titles it
	Section string // the heading within it, if any
	URL     string
}

// String cites s: "Docker docs: Deprecated Engine Features § AuFS storage
// driver, https://docs.docker.com/engine/deprecated/".
func (s Source) String() string {
	var b strings.Builder
	b.WriteString(s.Title)
	if s.Section != "" {
		b.WriteString(" § " + s.Section)
	}
	if s.URL != "" {
		b.WriteString(", " + s.URL)
	}
	return b.String()
}

// Cite joins sources into one citation, "; "-separated.
func Cite(sources ...Source) string {
	parts := make([]string, len(sources))
	for i, s := range sources {
		parts[i] = s.String()
	}
	return strings.Join(parts, "; ")
}

// Release is a Docker release a fact is tied to ("" = none), with its source.
type Release struct {
	Version string
	Source  Source
}

// KernelNeed is something a driver needs from the kernel: a config symbol
// and the module that provides it when built as a module.
type KernelNeed struct {
	Config string // e.g. CONFIG_OVERLAY_FS
	Module string // e.g. overlay
	Source Source
}

// Driver is one row of the table.
type Driver struct {
	Name string
	// Kernel lists what the driver needs from the kernel.
	Kernel []KernelNeed
	// MinKernel is the oldest mainline kernel the driver works on ("" = any).
	MinKernel Release
	// Modules are loaded by the guest agent before dockerd starts (modprobe
	// pulls in dependencies: dm_thin_pool brings dm_mod).
	Modules []string
	// ProcFS is the driver's name in /proc/filesystems once its module is
	// loaded ("" = no filesystem to look for).
	ProcFS string
	// ScratchDefault is the scratch filesystem a cell gets when it sets
	// none; ScratchAllowed are those the driver runs on (Raw: the driver
	// takes the block device).
	ScratchDefault string
	ScratchAllowed []string
	ScratchSource  Source
	// RawChecker is what the host checker examines on a raw scratch disk
	// ("thin": the thin pool's metadata, with thin_check); "" = nothing.
	RawChecker string
	// Packages are the Debian packages the guest needs for the driver
	// besides docker.io.
	Packages []string
	// Docker releases that added, deprecated and removed the driver.
	Added, Deprecated, Removed Release
}

// Sources cited by the table.
var (
	deprecatedPage = "Docker docs: Deprecated Engine Features"
	deprecatedURL  = "https://docs.docker.com/engine/deprecated/"
	selectDriver   = Source{Title: "Docker docs: Select a storage driver", Section: "Supported backing filesystems",
		URL: "https://docs.docker.com/engine/storage/drivers/select-storage-driver/"}
	// OverlayDoc is the OverlayFS storage driver page (kernel versions, xfs needs ftype=1).
	OverlayDoc = driverPage("OverlayFS", "overlayfs-driver")
	// AufsDoc is the AUFS storage driver page.
	AufsDoc  = driverPage("AUFS", "aufs-driver")
	dmDoc    = driverPage("Device Mapper", "device-mapper-driver")
	btrfsDoc = driverPage("BTRFS", "btrfs-driver")
	zfsDoc   = driverPage("ZFS", "zfs-driver")
	vfsDoc   = driverPage("VFS", "vfs-driver")
	// checkConfig is moby's contrib/check-config.sh at v20.10.0 (the last
	// release that still had aufs): its "Storage Drivers" part names the
	// kernel config symbols each driver needs.
	checkConfig = Source{Title: "moby contrib/check-config.sh at v20.10.0", Section: "Storage Drivers",
		URL: "https://github.com/moby/moby/blob/v20.10.0/contrib/check-config.sh"}
)

// driverPage cites Docker's documentation page on a storage driver.
func driverPage(name, slug string) Source {
	return Source{Title: "Docker docs: " + name + " storage driver", URL: "https://docs.docker.com/engine/storage/drivers/" + slug + "/"}
}

// changelog cites the Docker CHANGELOG entry of release v (releases before 17.03).
func changelog(v string) Release {
	return Release{Version: v, Source: Source{Title: "Docker CHANGELOG", Section: v,
		URL: "https://github.com/moby/moby/blob/v17.03.0-ce/CHANGELOG.md"}}
}

// deprecated cites the deprecated-features page's section on a driver.
func deprecated(v, section string) Release {
	return Release{Version: v, Source: Source{Title: deprecatedPage, Section: section, URL: deprecatedURL}}
}

// config is a kernel need: the config symbol, its module, and where the
// need is stated.
func config(symbol, module string, src Source) KernelNeed {
	return KernelNeed{Config: symbol, Module: module, Source: src}
}

// table is the storage-driver table, in the order the drivers are listed to users.
func table() []Driver {
	const (
		aufsSection    = "AuFS storage driver"
		overlaySection = `Legacy "overlay" storage driver`
		dmSection      = "Device mapper storage driver"
	)
	return []Driver{
		{Name: "aufs", Kernel: []KernelNeed{config("CONFIG_AUFS_FS", "aufs", checkConfig)},
			Modules: []string{"aufs"}, ProcFS: "aufs",
			ScratchDefault: "ext4", ScratchAllowed: []string{"ext4", "xfs"}, ScratchSource: selectDriver,
			// Docker's original driver: no release added it.
			Deprecated: deprecated("19.03", aufsSection), Removed: deprecated("24.0", aufsSection)},
		{Name: "overlay", Kernel: []KernelNeed{config("CONFIG_OVERLAY_FS", "overlay", checkConfig)},
			MinKernel: Release{Version: "3.18", Source: OverlayDoc},
			Modules:   []string{"overlay"}, ProcFS: "overlay",
			ScratchDefault: "ext4", ScratchAllowed: []string{"ext4", "xfs"}, ScratchSource: selectDriver,
			Added:      changelog("1.4.0"),
			Deprecated: deprecated("18.09", overlaySection), Removed: deprecated("24.0", overlaySection)},
		{Name: "overlay2", Kernel: []KernelNeed{config("CONFIG_OVERLAY_FS", "overlay", checkConfig)},
			MinKernel: Release{Version: "4.0", Source: OverlayDoc},
			Modules:   []string{"overlay"}, ProcFS: "overlay",
			ScratchDefault: "ext4", ScratchAllowed: []string{"ext4", "xfs"}, ScratchSource: selectDriver,
			Added: changelog("1.12.0")},
		{Name: "devicemapper",
			Kernel:  []KernelNeed{config("CONFIG_BLK_DEV_DM", "dm_mod", checkConfig), config("CONFIG_DM_THIN_PROVISIONING", "dm_thin_pool", checkConfig)},
			Modules: []string{"dm_thin_pool"},
			// The agent builds the thin pool on the raw scratch disk (direct-lvm's layout).
			ScratchDefault: Raw, ScratchAllowed: []string{Raw}, ScratchSource: dmDoc,
			RawChecker: "thin", Packages: []string{"thin-provisioning-tools"},
			Added:      changelog("0.7.0"),
			Deprecated: deprecated("18.09", dmSection), Removed: deprecated("25.0", dmSection)},
		{Name: "btrfs", Kernel: []KernelNeed{config("CONFIG_BTRFS_FS", "btrfs", checkConfig)},
			Modules: []string{"btrfs"}, ProcFS: "btrfs",
			ScratchDefault: "btrfs", ScratchAllowed: []string{"btrfs"}, ScratchSource: btrfsDoc,
			Added: changelog("0.8.0")},
		{Name: "vfs",
			ScratchDefault: "ext4", ScratchAllowed: []string{"ext4", "xfs", "btrfs"}, ScratchSource: vfsDoc,
			Added: changelog("0.7.0")},
		{Name: "zfs", Kernel: []KernelNeed{config("CONFIG_ZFS", "zfs", zfsDoc)},
			Modules: []string{"zfs"}, ProcFS: "zfs",
			// The zpool is made on the raw scratch disk ("a dedicated block device").
			ScratchDefault: Raw, ScratchAllowed: []string{Raw}, ScratchSource: zfsDoc,
			Packages: []string{"zfsutils-linux"},
			Added:    changelog("1.7.0")},
		{Name: "fuse-overlayfs", Kernel: []KernelNeed{config("CONFIG_FUSE_FS", "fuse", Source{Title: "fuse-overlayfs README", URL: "https://github.com/containers/fuse-overlayfs"})},
			Modules: []string{"fuse"}, ProcFS: "fuse",
			ScratchDefault: "ext4", ScratchAllowed: []string{"ext4", "xfs"}, ScratchSource: selectDriver,
			Packages: []string{"fuse-overlayfs"},
			Added: Release{Version: "20.10.0", Source: Source{Title: "moby source tree at v20.10.0",
				Section: "daemon/graphdriver/fuse-overlayfs", URL: "https://github.com/moby/moby/tree/v20.10.0/daemon/graphdriver/fuse-overlayfs"}}},
	}
}

// All returns the table, a fresh copy.
func All() []Driver { return table() }

// Names lists the drivers in table order.
func Names() []string {
	t := table()
	names := make([]string, len(t))
	for i, d := range t {
		names[i] = d.Name
	}
	return names
}

// Lookup finds a driver by name.
func Lookup(name string) (Driver, bool) {
	t := table()
	if i := slices.IndexFunc(t, func(d Driver) bool { return d.Name == name }); i >= 0 {
		return t[i], true
	}
	return Driver{}, false
}

// MustLookup is Lookup for names known to be in the table; it panics otherwise.
func MustLookup(name string) Driver {
	d, ok := Lookup(name)
	if !ok {
		panic("drivers: no storage driver " + name)
	}
	return d
}

// DefaultScratchFS is the scratch filesystem a cell of driver gets when it
// sets none: the driver's ScratchDefault, ext4 for a driver not in the table.
func DefaultScratchFS(driver string) string {
	if d, ok := Lookup(driver); ok {
		return d.ScratchDefault
	}
	return "ext4"
}

// CheckedFS is what the host checker examines on a scratch disk of
// scratchFS used by driver: the driver's RawChecker on a raw disk, else the
// filesystem itself.
func CheckedFS(driver, scratchFS string) string {
	if d, ok := Lookup(driver); ok && scratchFS == Raw && d.RawChecker != "" {
		return d.RawChecker
	}
	return scratchFS
}

// Sources of the rules that are not about one driver's row.
var (
	// DType is the deprecated-features section on backing filesystems without d_type.
	DType = Source{Title: deprecatedPage, Section: "Backing filesystem without d_type support for overlay/overlay2", URL: deprecatedURL}
	// DaemonKernelFloor is the check dockerd made before 23.0 for kernels older than 3.10.
	DaemonKernelFloor = Source{Title: "moby source at v20.10.0", Section: "daemon/daemon_unix.go checkKernel",
		URL: "https://github.com/moby/moby/blob/v20.10.0/daemon/daemon_unix.go"}
)
