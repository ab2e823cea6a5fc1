// Package main is matrixctl-agent, the guest's init (PID 1) in every QEMU cell.
//
// It mounts the pseudo filesystems, loads the modules the host put into the
// initramfs (virtio, ext4) with finit_module, mounts the root disk and switches
// into it, mounts the kernel's module disk, brings up the network, prepares the
// scratch disk for the cell's storage driver, starts dockerd and reports every
// step to the host over the agent channel (runner/agentproto), a serial port
// separate from the kernel console. It then serves the host's commands
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
