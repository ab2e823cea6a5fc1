#!/bin/sh
# Provisioning of a matrixctl cell: the requested Docker engine, its data
# directory on the scratch disk with the requested storage driver, and the API
# on the guest's unix socket only (the host reaches it through an SSH-forwarded
# port bound to 127.0.0.1). Parameters come as MATRIXCTL_* environment variables.
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
mount "$dev" /var/lib/docker
mkdir -p /etc/docker
printf '{"storage-driver": "%s", "hosts": ["unix:///var/run/docker.sock"]}\n' "$MATRIXCTL_DRIVER" > /etc/docker/daemon.json
# Debian's unit passes -H fd://, which conflicts with "hosts" in daemon.json.
mkdir -p /etc/systemd/system/docker.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock\n' > /etc/systemd/system/docker.service.d/matrixctl.conf
# The host's SSH forward opens the socket as the login user.
usermod -aG docker "${SUDO_USER:-vagrant}" 2>/dev/null || true
systemctl daemon-reload
systemctl start containerd.service
systemctl start docker.service
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
