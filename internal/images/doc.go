// Package images acquires and caches what a cell boots: a kernel (vmlinuz and
// its module tree) from a Debian linux-image package or local files, and a
// root filesystem image per (distro, docker) built with mmdebstrap from the
// host's own Debian mirror.
//
// Cache entries are content-addressed directories under the cache dir. An entry
// is complete only when its manifest (with the sha256 of every file it lists)
// has been written last, atomically; an entry without a valid manifest is
// partial or corrupt and is rebuilt. Concurrent builders of one entry (test
// packages run in parallel, several cells share a kernel) serialise on a lock
// file, so a second caller waits and then reuses the first one's result.
//
// Layout of a cache dir (see Cache):
//
//	apt/<suite>/             private apt environment: sources.list, indexes, "updated" stamp
//	kernels/<key>/           vmlinuz, config, root/lib/modules/<release>/, modules.ext4, manifest.json
//	rootfs/<key>/            rootfs.ext4, packages.txt, manifest.json
//	kernels|rootfs/<key>.lock
//	initramfs/<key>.cpio     runner/qemu's guest-agent initramfs (listed and pruned here, built there)
//	boxes/<key>/             vagrant.BuildBox's boxes (listed and pruned here, built there)
//	.trash/                  entries being pruned
//
// Entries in use are leased: a Cache holds a shared flock on every entry it
// hands out until Close; ListEntries reports them in use and Prune skips
// them (store.go).
//
// A kernel key hashes the package's pool filename and SHA256 from the index
// (or, for local files, the vmlinuz sha256 and the module tree's names,
// sizes and mtimes); a rootfs key hashes the suite, the package list, the
// Docker version and package version, and the mirror lines.
//
// Mirrors come from the host's apt sources (/etc/apt/sources.list,
// sources.list.d/*.list and deb822 *.sources): the entry for a Debian suite
// with component main, and the one for <codename>-security. Package lookups
// and downloads run apt-get with a private state, cache and sources list per
// suite (the host's apt state is never touched); apt-get update runs once
// per suite per Cache and not again while the indexes are younger than 6 h.
//
// Environment variables read (in one place, optionsFor):
//
//	MATRIXCTL_MIRROR            Debian archive URI, instead of the host's
//	MATRIXCTL_SECURITY_MIRROR   Debian security archive URI, instead of the host's
//
// Errors: a *PackageError (errors.Is ErrNotFound) says a suite lacks a
// package or version and names what it has; a *MirrorError that the mirror
// is unreachable or lacks a suite; a *proc.Error that a tool (apt-get,
// dpkg-deb, depmod, mkfs.ext4, mmdebstrap) failed, with argv, exit code and
// the tail of its output; a *CorruptError that an entry does not match its
// manifest (Kernel and Rootfs handle that by rebuilding). Every child process
// is started by internal/proc: its own process group, dead with this process
// (Pdeathsig), killed as a group when the context ends.
//
// Building needs root (mmdebstrap's root mode, file ownership in the images)
// and the tools apt-get, dpkg-deb, depmod, xz, zstd, mkfs.ext4, mmdebstrap
// and unshare. Images are made with `mkfs.ext4 -d`: no mounts, no loop
// devices, and ext4 features old kernels can mount (no metadata_csum, no orphan_file).
package images
