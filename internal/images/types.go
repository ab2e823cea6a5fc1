package images

// Kernel is an imported kernel, ready for QEMU direct boot.
type Kernel struct {
	// Release is the kernel's uname -r, e.g. "6.1.0-28-amd64".
	Release string `json:"release"`
	// Version is the upstream version, e.g. "6.1.119" (from the package or the image).
	Version string `json:"version"`
	// Package and PackageVersion name the Debian package it came from (empty for local kernels).
	Package        string `json:"package,omitempty"`
	PackageVersion string `json:"package_version,omitempty"`
	// Vmlinuz is the bootable kernel image.
	Vmlinuz string `json:"vmlinuz"`
	// ModulesDir is the module tree for Release (it holds modules.dep and
	// kernel/...); every module in it is uncompressed (.ko) and depmod has run.
	ModulesDir string `json:"modules_dir"`
	// ModulesImage is an ext4 image whose root is ModulesDir's content, to be
	// attached read-only and mounted at /lib/modules/<Release> in the guest.
	ModulesImage string `json:"modules_image"`
	// Config is the kernel's config file (CONFIG_...=y|m lines), empty if the package ships none.
	Config string `json:"config,omitempty"`
}

// Rootfs is a distro userland with a Docker engine, as a disk image.
type Rootfs struct {
	// Image is an ext4 image of the root filesystem. Cells never write it:
	// attach it read-only or with a throwaway overlay (QEMU snapshot=on).
	Image string `json:"image"`
	// Suite is the Debian suite it was built from.
	Suite string `json:"suite"`
	// DockerPackageVersion is the installed docker.io package version, e.g. "20.10.24+dfsg1-1+deb12u1".
	DockerPackageVersion string `json:"docker_package_version"`
	// Packages is a text file listing every installed package and its version.
	Packages string `json:"packages,omitempty"`
	// PackagesAdded are the cell's added packages as installed ("strace
	// 6.1-0.1"); PackagesRemoved is everything apt removed for the cell's
	// removed packages, the packages that depended on them included
	// ("apparmor 3.0.8-3"). Both are sorted; empty for the standard rootfs.
	PackagesAdded   []string `json:"packages_added,omitempty"`
	PackagesRemoved []string `json:"packages_removed,omitempty"`
}
