#!/bin/sh
# Provisioning of a matrixctl cell: the requested Docker engine, configured
# the way Docker's storage-driver docs tell a user to: a disk for its data
# mounted at /var/lib/docker (the default data root) through /etc/fstab, and
# /etc/docker/daemon.json naming the storage driver. Nothing else of Docker's
# configuration changes: Debian's docker.socket serves /run/docker.sock and
# the host reaches it through an SSH-forwarded port bound to 127.0.0.1.
# Parameters come as MATRIXCTL_* environment variables.
#
# Fidelity costs: what a project-built box and this script change compared
# with a standard Debian install plus `apt-get install docker.io` (README's
# Vagrant section lists the same):
# - Docker's units (docker.service, docker.socket, containerd.service) are
#   disabled in the box and enabled here, after the scratch disk is mounted:
#   dockerd starts first during provisioning, not at boot.
# - The vagrant user is in the docker group (as Docker's post-install docs
#   tell a non-root user to do), so the SSH forward reaches the socket.
# - The box boots its kernel directly (no boot loader) with a small
#   initramfs, panic=-1 and net.ifnames=0; the domain stops instead of
#   rebooting.
# - Left out of docker.io's Recommends: git, needrestart, cgroupfs-mount
#   (vagrant/box.go says why).
# - The box has no man pages, docs or locales, and no other Priority:
#   standard packages Docker does not use (cron, logrotate, editors).
set -eu
# Lines go to vagrant's output (provision.log) and to the serial console,
# so the console stream shows where provisioning got to.
log() { echo "matrixctl-provision: $*"; echo "matrixctl-provision: $*" > /dev/console 2>/dev/null || true; }

pkg=${MATRIXCTL_DOCKER_PACKAGE:-docker.io}
have=$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || true)
upstream=$(echo "$have" | sed -e 's/^[0-9]*://' -e 's/[+~-].*//')
if [ "$upstream" != "$MATRIXCTL_DOCKER_VERSION" ]; then
	log "installing $pkg $MATRIXCTL_DOCKER_VERSION (box has '${have:-none}')"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	v=$(apt-cache madison "$pkg" | awk -v want="$MATRIXCTL_DOCKER_VERSION" '{ u=$3; sub(/^[0-9]+:/, "", u); sub(/[+~-].*/, "", u); if (u == want) { print $3; exit } }')
	if [ -z "$v" ]; then
		log "unsupported: $pkg $MATRIXCTL_DOCKER_VERSION is not available in the guest's apt sources"
		exit 3
	fi
	apt-get install -y -q "$pkg=$v"
fi

systemctl stop docker.service docker.socket containerd.service 2>/dev/null || true
dev=$MATRIXCTL_SCRATCH_DEV
case "$MATRIXCTL_SCRATCH_FS" in
ext4) mkfs.ext4 -q -F $MATRIXCTL_MKFS_ARGS "$dev" ;;
xfs) mkfs.xfs -q -f $MATRIXCTL_MKFS_ARGS "$dev" ;;
btrfs) mkfs.btrfs -q -f $MATRIXCTL_MKFS_ARGS "$dev" ;;
*) log "unsupported: scratch filesystem $MATRIXCTL_SCRATCH_FS"; exit 3 ;;
esac
mkdir -p /var/lib/docker
sed -i '\|[[:space:]]/var/lib/docker[[:space:]]|d' /etc/fstab
echo "$dev /var/lib/docker $MATRIXCTL_SCRATCH_FS defaults 0 2" >> /etc/fstab
systemctl daemon-reload
mount /var/lib/docker
mkdir -p /etc/docker
printf '{\n  "storage-driver": "%s"\n}\n' "$MATRIXCTL_DRIVER" > /etc/docker/daemon.json
# The host's SSH forward opens the socket as the login user.
usermod -aG docker "${SUDO_USER:-vagrant}"
systemctl enable --now containerd.service docker.socket docker.service
for i in $(seq 1 60); do
	if docker version >/dev/null 2>&1; then
		log "dockerd ready: $(docker info --format '{{.Driver}}') on $MATRIXCTL_SCRATCH_FS, kernel $(uname -r)"
		exit 0
	fi
	sleep 1
done
log "dockerd did not answer within 60 s"
journalctl -u docker.service --no-pager | tail -50
exit 1
