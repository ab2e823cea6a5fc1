package vagrant

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"
)

//go:embed Vagrantfile.tmpl
var vagrantfileTmpl string

// ProvisionScript is the shell provisioner the Vagrantfile names (provision.sh).
//
//go:embed provision.sh
var ProvisionScript []byte

// Params are the values of one cell's Vagrantfile.
type Params struct {
	Cell   string
	Repeat int
	// Box and BoxVersion name the box ("" version: any).
	Box, BoxVersion string
	// URI is libvirt's connection URI; LibvirtDriver "qemu" (TCG) or "kvm".
	URI, LibvirtDriver string
	// Prefix is the domain name prefix (the domain is Prefix + "default").
	Prefix        string
	CPUs          int
	MemoryMB      int
	ScratchMiB    int
	ConsoleFile   string
	DockerVersion string
	DockerPackage string
	// Driver is Docker's storage driver; ScratchFS the scratch disk's filesystem.
	Driver, ScratchFS string
	MkfsArgs          string
	// ManagementNetwork is the existing libvirt network the management
	// interface joins, ManagementNetworkAddress its CIDR (empty: let
	// vagrant-libvirt create and remove its own "vagrant-libvirt" network).
	ManagementNetwork, ManagementNetworkAddress string
	// Kernel, Initrd, Cmdline boot a project-built box directly (empty: the box's boot loader).
	Kernel, Initrd, Cmdline string
	BootTimeoutSeconds      int
}

// Render returns the Vagrantfile for p. Every string lands in a Ruby
// single-quoted literal, so text from the spec is data, never code.
func Render(p Params) ([]byte, error) {
	if p.CPUs <= 0 || p.MemoryMB <= 0 || p.ScratchMiB <= 0 {
		return nil, fmt.Errorf("vagrantfile for %s: cpus %d, memory %d MiB and scratch %d MiB must be positive", p.Cell, p.CPUs, p.MemoryMB, p.ScratchMiB)
	}
	if p.Box == "" {
		return nil, fmt.Errorf("vagrantfile for %s: no box", p.Cell)
	}
	if (p.ManagementNetwork == "") != (p.ManagementNetworkAddress == "") {
		return nil, fmt.Errorf("vagrantfile for %s: management network %q needs its address (got %q)", p.Cell, p.ManagementNetwork, p.ManagementNetworkAddress)
	}
	if p.BootTimeoutSeconds <= 0 {
		p.BootTimeoutSeconds = 300
	}
	t, err := template.New("Vagrantfile").Funcs(template.FuncMap{"rb": rubyString}).Parse(vagrantfileTmpl)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// rubyString quotes s as a Ruby single-quoted string: only \ and ' are
// special there, and no interpolation happens. Newlines become spaces so a
// value cannot end the line it sits on (a comment line, for one).
func rubyString(s string) string {
	s = strings.NewReplacer("\\", "\\\\", "'", "\\'", "\n", " ", "\r", " ").Replace(s)
	return "'" + s + "'"
}
