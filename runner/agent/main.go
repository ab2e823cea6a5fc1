// Package main is matrixctl-agent, the guest side of every QEMU cell.
//
// As the initramfs's init (PID 1) it mounts the pseudo filesystems, loads the
// modules the host put into the initramfs (virtio, ext4) with finit_module
// and mounts the root disk. With init: systemd (the default,
// agentproto.DefaultInit; systemd.go) it
// then mounts the kernel's module disk where the distro's kmod looks,
// installs itself and a runtime unit under the new root's /run and execs the
// rootfs's /sbin/init; systemd runs `matrixctl-agent guest` (guest.go) as
// matrixctl-agent.service, which prepares the scratch disk and daemon.json
// before the distro's docker.service starts, then proxies the Docker API.
// With init: agent it stays PID 1: it switches into the root, mounts cgroup
// v1 and the module disk, brings up the network, prepares the scratch disk
// and starts containerd and dockerd itself. Either way it reports every step
// to the host over the agent channel (runner/agentproto), a serial port
// separate from the kernel console, and serves the host's commands
// (shutdown and the fault-injection commands) until the VM powers off.
//
// Run as anything but PID 1, or with the argument print, it is a tiny test program: `matrixctl-agent print
// WORDS...` prints WORDS and exits 0 (the integration tests use it as a
// container's entrypoint, since there is no registry to pull images from).
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	// The tool mode is chosen by its argument, not by PID: as a container's
	// entrypoint the agent is PID 1 too.
	if len(os.Args) > 1 && os.Args[1] == "guest" {
		newAgent().runGuest() // never returns
	}
	if os.Getpid() != 1 || (len(os.Args) > 1 && os.Args[1] == "print") {
		os.Exit(tool(os.Args[1:]))
	}
	a := newAgent()
	a.run() // never returns
}

// tool is the non-init mode.
func tool(args []string) int {
	if len(args) >= 1 && args[0] == "print" {
		fmt.Println(strings.Join(args[1:], " "))
		return 0
	}
	fmt.Fprintln(os.Stderr, "matrixctl-agent is the guest init of matrixctl cells; as a tool it only knows: print WORDS...")
	return 2
}
