// Package vagrant holds what the Vagrant provider (runner/vagrant) renders
// and boots: the per-cell Vagrantfile template and provisioning script, the
// box catalog that maps (distro, kernel) to a box, and the builder of the
// project's own libvirt boxes.
//
// A project-built box is made from a Debian minbase rootfs (mmdebstrap from
// the host's apt mirrors, found through internal/images) with what a
// standard Debian install of the release has and Docker relies on (systemd,
// udev, AppArmor, iptables; boxPackages says which entry is why), what
// Vagrant needs (openssh-server, sudo, ifupdown + DHCP), the requested
// docker.io and the kernel internal/images imported (its module tree copied
// in, an initramfs made with mkinitramfs). The box is a tar of metadata.json, Vagrantfile and
// box.img (qcow2); the kernel and initrd stay beside it in the cache entry and
// are booted directly (libvirt.kernel / initrd / cmd_line), since the image
// has no partition table and no boot loader.
//
// Boxes that only exist as downloads (Debian 8 with 3.16, CentOS 7) are
// named in the catalog with their box name and version; the provider boots
// them through the box's own boot loader.
package vagrant
