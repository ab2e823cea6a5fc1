#!/usr/bin/env bash
# Installs the system packages matrixctl and its tests use, from the host's own
# apt configuration, and starts dockerd when it is not running. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
	# VMs: QEMU (TCG works everywhere), disk images
	qemu-system-x86 qemu-utils
	# rootfs builds and kernel package handling
	mmdebstrap debian-archive-keyring dpkg-dev xz-utils zstd cpio kmod
	# host-side filesystem checkers and scratch-disk tools
	e2fsprogs xfsprogs btrfs-progs lvm2 thin-provisioning-tools
	# the host's own dockerd: the local provider and probe tests
	docker.io
	# report tests in a headless browser
	chromium
	# misc
	ca-certificates iproute2 make git procps
	# the CI fan-out tests: actionlint checks the workflows' scripts with it
	shellcheck
	# the vagrant provider: Vagrant with its libvirt plugin, libvirtd (its
	# default network needs dnsmasq), ssh for the Docker API forward
	vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base openssh-client
)

apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"

if ! docker info >/dev/null 2>&1; then
	echo "starting dockerd" >&2
	nohup dockerd >/var/log/matrixctl-dockerd.log 2>&1 &
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/matrixctl-dockerd.log" >&2; exit 1; }
fi

# libvirtd for the vagrant provider (no systemd on these machines). Not fatal:
# only --provider vagrant needs it, and it says so clearly when it is missing.
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
	echo "starting virtlogd and libvirtd" >&2
	virtlogd -d || echo "warning: virtlogd did not start" >&2
	libvirtd -d || echo "warning: libvirtd did not start" >&2
fi
