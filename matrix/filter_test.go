package matrix

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func oldKernelsPlan(t *testing.T) []Cell {
	t.Helper()
	s, err := Load("testdata/valid-old-kernels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	return cells
}

func TestFilter(t *testing.T) {
	cells := oldKernelsPlan(t)
	tests := []struct {
		name string
		f    Filter
		want func(Cell) bool
	}{
		{"kernel line", Filter{Kernel: []string{"3.16"}}, func(c Cell) bool { return strings.HasPrefix(c.Kernel.Version, "3.16.") }},
		{"kernel exact", Filter{Kernel: []string{"3.16.7"}}, func(c Cell) bool { return c.Kernel.Version == "3.16.7" }},
		{"kernel 3.16.0 matches 3.16.0 only", Filter{Kernel: []string{"3.16.0"}}, func(c Cell) bool { return c.Kernel.Version == "3.16.0" }},
		{"kernel major", Filter{Kernel: []string{"6"}}, func(c Cell) bool { return c.Kernel.Version == "6.1" }},
		{"kernel constraint", Filter{Kernel: []string{">= 4, < 6.2"}}, func(c Cell) bool { return c.Kernel.Version == "4.9" || c.Kernel.Version == "6.1" }},
		{"kernel OR", Filter{Kernel: []string{"4.9", "6.1"}}, func(c Cell) bool { return c.Kernel.Version == "4.9" || c.Kernel.Version == "6.1" }},
		{"aufs on 3.16", Filter{Kernel: []string{"3.16"}, Driver: []string{"aufs"}}, func(c Cell) bool {
			return strings.HasPrefix(c.Kernel.Version, "3.16") && c.Driver == "aufs"
		}},
		{"distro by suite", Filter{Distro: []string{"jessie"}}, func(c Cell) bool { return c.Distro.Name == "debian8" }},
		{"docker line", Filter{Docker: []string{"20.10"}}, func(c Cell) bool { return c.Docker.Version == "20.10.24" }},
		{"docker constraint", Filter{Docker: []string{"< 2"}}, func(c Cell) bool { return c.Docker.Version == "1.6.2" }},
		{"cell glob", Filter{Cell: []string{"k4.9-*-vfs"}}, func(c Cell) bool { return c.Kernel.Version == "4.9" && c.Driver == "vfs" }},
		{"cell id", Filter{Cell: []string{"k6.1-debian12-docker20.10.24-aufs"}}, func(c Cell) bool { return c.ID == "k6.1-debian12-docker20.10.24-aufs" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.f.Apply(cells)
			if err != nil {
				t.Fatal(err)
			}
			var want []Cell
			for _, c := range cells {
				if tc.want(c) {
					want = append(want, c)
				}
			}
			if len(want) == 0 || !slices.Equal(ids(got), ids(want)) {
				t.Errorf("got %v\nwant %v", ids(got), ids(want))
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	cells := oldKernelsPlan(t)
	tests := []struct {
		name string
		f    Filter
		want string
	}{
		{"kernel 99", Filter{Kernel: []string{"99"}}, "--kernel 99: selects no cell; kernels in the plan: 3.16.0, 3.16.7, 4.9, 6.1"},
		{"6.1 is not 6.12", Filter{Kernel: []string{"6.12"}}, "kernels in the plan: 3.16.0, 3.16.7, 4.9, 6.1"},
		{"driver", Filter{Driver: []string{"zfs"}}, "--driver zfs: selects no cell; drivers in the plan: aufs, overlay, overlay2, devicemapper, vfs"},
		{"distro", Filter{Distro: []string{"debian13"}}, "distros in the plan: debian8, debian12"},
		{"docker", Filter{Docker: []string{"26"}}, "dockers in the plan: 1.6.2, 20.10.24"},
		{"cell", Filter{Cell: []string{"nope"}}, "--cell nope: selects no cell"},
		{"bad constraint", Filter{Kernel: []string{">>= 4"}}, `--kernel >>= 4: want a version`},
		{"bad pattern", Filter{Cell: []string{"["}}, "--cell [: bad pattern"},
		{"combination", Filter{Kernel: []string{"6.1"}, Distro: []string{"debian8"}}, "no cell matches --kernel 6.1 --distro debian8 together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.Apply(cells)
			var fe *FilterError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a *FilterError with %q", err, tc.want)
			}
		})
	}
}

func TestSplitFlagValues(t *testing.T) {
	got := SplitFlagValues([]string{"3.16,4.9", " 6.1 ", ">= 5.10, < 6.2", "aufs,,vfs"})
	want := []string{"3.16", "4.9", "6.1", ">= 5.10, < 6.2", "aufs", "vfs"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// --init and --cgroup select by host setting, with the defaults applied.
func TestFilterHostSettings(t *testing.T) {
	cells := mustPlan(t, "hosts.yaml", header+`
axes:
  kernel:
    - {version: "6.1", debian: {suite: bookworm}}
  distro: [debian12]
  docker: [distro]
  driver: [overlay2, vfs, btrfs]
include:
  - {driver: vfs, init: agent}
  - {driver: btrfs, cgroup: v1}
`)
	tests := []struct {
		f    Filter
		want []string
	}{
		{Filter{Init: []string{"systemd"}}, []string{"k6.1-debian12-docker20.10.24-overlay2", "k6.1-debian12-docker20.10.24-btrfs-cgroupv1"}},
		{Filter{Init: []string{"agent"}}, []string{"k6.1-debian12-docker20.10.24-vfs-init-agent"}},
		{Filter{Cgroup: []string{"distro"}}, []string{"k6.1-debian12-docker20.10.24-overlay2", "k6.1-debian12-docker20.10.24-vfs-init-agent"}},
		{Filter{Cgroup: []string{"v1", "v2"}}, []string{"k6.1-debian12-docker20.10.24-btrfs-cgroupv1"}},
	}
	for _, tt := range tests {
		got, err := tt.f.Apply(cells)
		if err != nil {
			t.Errorf("%+v: %v", tt.f, err)
			continue
		}
		if ids := ids(got); !slices.Equal(ids, tt.want) {
			t.Errorf("%+v: %v, want %v", tt.f, ids, tt.want)
		}
	}
	for _, bad := range []Filter{{Init: []string{"openrc"}}, {Cgroup: []string{"v3"}}} {
		var fe *FilterError
		if _, err := bad.Apply(cells); !errors.As(err, &fe) || !strings.Contains(err.Error(), "want one of") {
			t.Errorf("%+v: %v, want a FilterError naming the choices", bad, err)
		}
	}
}
