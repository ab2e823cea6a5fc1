package qemu

import (
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/images"
)

// The kernel command line carries what the cell's init and cgroup settings
// need, and every such parameter is recorded as a harness change.
func TestInitCmdline(t *testing.T) {
	cases := []struct {
		init, cgroup string
		want, absent []string
	}{
		{"", "", []string{"panic=-1", "net.ifnames=0"}, []string{"systemd.unified_cgroup_hierarchy", "matrixctl.init="}}, // DefaultInit: systemd
		{"systemd", "", []string{"panic=-1", "net.ifnames=0", "matrixctl.init=systemd"}, []string{"systemd.unified_cgroup_hierarchy"}},
		{"systemd", "v1", []string{"net.ifnames=0", "systemd.unified_cgroup_hierarchy=0", "matrixctl.cgroup=v1"}, nil},
		{"systemd", "v2", []string{"systemd.unified_cgroup_hierarchy=1"}, nil},
		{"agent", "", []string{"matrixctl.init=agent"}, []string{"net.ifnames", "systemd."}},
	}
	for _, tc := range cases {
		v := &VM{cfg: Config{Kernel: &images.Kernel{}, Rootfs: &images.Rootfs{}, Driver: "overlay2", Init: tc.init, Cgroup: tc.cgroup}}
		args, err := v.args("/initrd")
		if err != nil {
			t.Fatal(err)
		}
		var line string
		for i, a := range args {
			if a == "-append" {
				line = args[i+1]
			}
		}
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("init %q cgroup %q: cmdline %q lacks %s", tc.init, tc.cgroup, line, w)
			}
		}
		for _, a := range tc.absent {
			if strings.Contains(line, a) {
				t.Errorf("init %q cgroup %q: cmdline %q has %s", tc.init, tc.cgroup, line, a)
			}
		}
		var changes strings.Builder
		for _, h := range harnessChanges(v.cfg) {
			changes.WriteString(h.What + "\n")
		}
		for _, p := range strings.Fields(line) {
			if strings.HasPrefix(p, "net.") || strings.HasPrefix(p, "systemd.") {
				if !strings.Contains(changes.String(), p) {
					t.Errorf("init %q cgroup %q: %s is not a recorded harness change:\n%s", tc.init, tc.cgroup, p, changes.String())
				}
			}
		}
	}
}
