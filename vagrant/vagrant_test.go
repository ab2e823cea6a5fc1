package vagrant

import (
	"regexp"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/matrix"
)

func TestRenderQuotesEveryValue(t *testing.T) {
	p := Params{Cell: "k6.1-debian12\nsystem('x')", Box: `b'ox\`, URI: "qemu:///system", LibvirtDriver: "qemu",
		Prefix: "matrixctl-x-", CPUs: 2, MemoryMB: 1024, ScratchMiB: 2048, ConsoleFile: "/r/serial.log",
		DockerVersion: "20.10.24", DockerPackage: "docker.io", Driver: "overlay2", ScratchFS: "ext4",
		MkfsArgs: "#{`id`}", Kernel: "/c/vmlinuz", Initrd: "/c/initrd.img", Cmdline: KernelCmdline,
		ManagementNetwork: "default", ManagementNetworkAddress: "192.168.122.0/24"}
	b, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`config.vm.box = 'b\'ox\\'`,
		`libvirt.serial :type => "file", :source => {:path => '/r/serial.log'}`,
		`libvirt.kernel = '/c/vmlinuz'`,
		`libvirt.cmd_line = '` + KernelCmdline + `'`,
		`libvirt.storage :file, :size => "2048M", :type => "raw"`,
		`"MATRIXCTL_MKFS_ARGS" => '#{` + "`id`" + `}'`,
		`libvirt.qemuargs :value => "-no-reboot"`,
		`libvirt.cpus = 2`, `libvirt.memory = 1024`,
		`libvirt.management_network_name = 'default'`,
		`libvirt.management_network_address = '192.168.122.0/24'`,
		`libvirt.management_network_keep = true`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Vagrantfile lacks %q:\n%s", want, s)
		}
	}
	// The cell id's newline did not end the comment line.
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "system(") {
			t.Errorf("a value escaped its literal: %q", l)
		}
	}
	if strings.Contains(s, "box_version") {
		t.Errorf("no version asked, box_version rendered")
	}
	p.Kernel, p.BoxVersion = "", "8.11.1"
	b, err = Render(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Contains(s, "libvirt.kernel") || !strings.Contains(s, `config.vm.box_version = '8.11.1'`) {
		t.Errorf("downloaded box rendered wrongly:\n%s", s)
	}
}

func TestRenderRejects(t *testing.T) {
	for _, p := range []Params{
		{Cell: "c", Box: "b", CPUs: 0, MemoryMB: 1, ScratchMiB: 1},
		{Cell: "c", Box: "b", CPUs: 1, MemoryMB: 0, ScratchMiB: 1},
		{Cell: "c", Box: "", CPUs: 1, MemoryMB: 1, ScratchMiB: 1},
		{Cell: "c", Box: "b", CPUs: 1, MemoryMB: 1, ScratchMiB: 1, ManagementNetwork: "default"},
	} {
		if _, err := Render(p); err == nil || !strings.Contains(err.Error(), "vagrantfile for c") {
			t.Errorf("%+v: err %v", p, err)
		}
	}
}

func TestDefaultCatalog(t *testing.T) {
	c, err := ParseCatalog("boxes.yaml", DefaultCatalog)
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Lookup(matrix.Cell{ID: "x", Kernel: matrix.KernelRef{Version: "6.1", Box: "debian12-k6.1"}})
	if err != nil || e.Build == nil || e.Build.Suite != "bookworm" {
		t.Fatalf("%+v %v", e, err)
	}
	e, err = c.Lookup(matrix.Cell{ID: "x", Kernel: matrix.KernelRef{Version: "3.16"}, Distro: matrix.DistroRef{Name: "debian8"}})
	if err != nil || e.Name != "debian/jessie64" || e.Build != nil {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := c.Lookup(matrix.Cell{ID: "cell-9", Kernel: matrix.KernelRef{Box: "nope"}}); err == nil || !strings.Contains(err.Error(), `cell cell-9: box "nope"`) {
		t.Errorf("err %v", err)
	}
	if _, err := c.Lookup(matrix.Cell{ID: "cell-9", Kernel: matrix.KernelRef{Version: "2.6"}, Distro: matrix.DistroRef{Name: "debian5"}}); err == nil {
		t.Error("no error for a missing (distro, kernel)")
	}
}

func TestParseCatalogErrors(t *testing.T) {
	for in, want := range map[string]string{
		"boxes:\n  - {distro: d, kernel: k}\n":                                               "boxes[0]: no name",
		"boxes:\n  - {name: a, distro: d, kernel: k}\n  - {name: a, distro: d, kernel: k}\n": `name "a" appears twice`,
		"boxes:\n  - {name: a, kernel: k}\n":                                                 "distro and kernel are required",
		"boxes:\n  - {name: a, distro: d, kernel: k, build: {suite: s}}\n":                   "build needs suite and kernel_suite",
		"boxes:\n  - {name: a, distro: d, kernel: k, typo: 1}\n":                             "cat.yaml",
		"boxes: [": "cat.yaml",
	} {
		_, err := ParseCatalog("cat.yaml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func FuzzParseCatalog(f *testing.F) {
	f.Add(DefaultCatalog)
	f.Add([]byte("boxes: [{name: a, distro: d, kernel: k}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalog("fuzz.yaml", b)
		if err == nil {
			for _, e := range c.Boxes {
				if e.Name == "" {
					t.Fatal("accepted an entry without a name")
				}
			}
		}
	})
}

func FuzzRubyString(f *testing.F) {
	f.Add("plain")
	f.Add(`a'b\c` + "\n#{x}")
	f.Fuzz(func(t *testing.T, s string) {
		q := rubyString(s)
		if len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' || strings.ContainsAny(q, "\n\r") {
			t.Fatalf("bad literal %q", q)
		}
		// Every ' inside is escaped by an odd run of backslashes.
		body := q[1 : len(q)-1]
		for i := 0; i < len(body); i++ {
			if body[i] == '\\' {
				i++
				continue
			}
			if body[i] == '\'' {
				t.Fatalf("unescaped quote in %q", q)
			}
		}
	})
}

func TestInstalledVersion(t *testing.T) {
	status := "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: docker.io\nStatus: install ok installed\nVersion: 20.10.24+dfsg1-1+deb12u1\n"
	if v := installedVersion(status, "docker.io"); v != "20.10.24+dfsg1-1+deb12u1" {
		t.Errorf("got %q", v)
	}
	if v := installedVersion(status, "nope"); v != "" {
		t.Errorf("got %q", v)
	}
}

// TestProvisionConfiguresOnlyTheDriver keeps provisioning to what a user
// does for a storage driver (issue 15): daemon.json names the driver and
// nothing else, and no systemd drop-in changes Debian's Docker units.
func TestProvisionConfiguresOnlyTheDriver(t *testing.T) {
	var code []string
	for _, l := range strings.Split(string(ProvisionScript), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			code = append(code, l)
		}
	}
	writes := 0
	for _, l := range code {
		if strings.Contains(l, "> /etc/docker/daemon.json") {
			writes++
			if keys := regexp.MustCompile(`"([a-z0-9.-]+)"\s*:`).FindAllStringSubmatch(l, -1); len(keys) != 1 || keys[0][1] != "storage-driver" {
				t.Errorf("daemon.json gets keys %v, want storage-driver alone: %s", keys, l)
			}
		}
		if strings.Contains(l, ".service.d") || strings.Contains(l, "ExecStart") {
			t.Errorf("provisioning changes a systemd unit: %s", l)
		}
	}
	if writes != 1 {
		t.Errorf("daemon.json written %d times, want once", writes)
	}
}
