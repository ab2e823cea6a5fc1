package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func mustPlan(t *testing.T, name, text string) []Cell {
	t.Helper()
	s, err := Parse(name, []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cells, err := s.Plan()
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return cells
}

func ids(cells []Cell) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c.ID
	}
	return out
}

const header = "apiVersion: matrixctl/v1\nkind: Matrix\n"

// TestIncludeExcludeGitHubSemantics mirrors the example in GitHub's
// strategy.matrix documentation, mapped onto matrixctl's axes.
func TestIncludeExcludeGitHubSemantics(t *testing.T) {
	cells := mustPlan(t, "gh.yaml", header+`
axes:
  kernel:
    - {version: "5.10", debian: {suite: bullseye}}
    - {version: "6.1", debian: {suite: bookworm}}
  distro: [debian11, debian12]
  docker: [distro]
  driver: [overlay2, vfs]
exclude:
  - {kernel: "5.10", distro: debian12}          # partial match: drops 2 cells
  - {kernel: "6.1", distro: debian11, driver: vfs}
include:
  - {repeats: 2}                                # no axis keys: extends every original cell
  - {driver: vfs, repeats: 3}                   # added values can be overwritten
  - {kernel: "6.1", distro: debian11, docker: distro, driver: vfs, crash_check: true}   # excluded cell: added back as new
  - {kernel: "6.1", distro: debian11, driver: overlay2, scratch_fs: xfs} # extends one cell
  - {kernel: "6.1", distro: debian11, docker: "20.10.24", driver: vfs}   # would overwrite docker: new cell
`)
	type want struct {
		repeats    int
		crash      bool
		scratch    string
		status     Status
		reasonPart string
	}
	wants := map[string]want{
		"k5.10-debian11-docker20.10.5-overlay2":            {repeats: 2, status: StatusRunnable},
		"k5.10-debian11-docker20.10.5-vfs":                 {repeats: 3, status: StatusRunnable},
		"k6.1-debian11-docker20.10.5-overlay2-scratch-xfs": {repeats: 2, scratch: "xfs", status: StatusRunnable},
		"k6.1-debian12-docker20.10.24-overlay2":            {repeats: 2, status: StatusRunnable},
		"k6.1-debian12-docker20.10.24-vfs":                 {repeats: 3, status: StatusRunnable},
		"k6.1-debian11-docker20.10.5-vfs-crashcheck":       {repeats: 1, crash: true, status: StatusRunnable},
		"k6.1-debian11-docker20.10.24-vfs":                 {repeats: 1, status: StatusUnsupported, reasonPart: "docker 20.10.24 has no docker.io package for debian11 (bullseye ships docker.io 20.10.5)"},
	}
	if len(cells) != len(wants) {
		t.Fatalf("got cells %v, want %d", ids(cells), len(wants))
	}
	for _, c := range cells {
		w, ok := wants[c.ID]
		if !ok {
			t.Errorf("unexpected cell %s", c.ID)
			continue
		}
		if c.Settings.Repeats != w.repeats || c.Settings.CrashCheck != w.crash || c.Settings.ScratchFS != w.scratch || c.Status != w.status || !strings.Contains(c.Reason, w.reasonPart) {
			t.Errorf("%s: repeats %d crash %v scratch %q status %s reason %q; want %+v", c.ID, c.Settings.Repeats, c.Settings.CrashCheck, c.Settings.ScratchFS, c.Status, c.Reason, w)
		}
	}
}

func TestDockerResolution(t *testing.T) {
	cells := mustPlan(t, "docker.yaml", header+`
axes:
  kernel: [{version: "6.1", debian: {suite: bookworm}}]
  distro:
    - debian12
    - debian13
    - {name: custom, suite: bookworm-backports}
    - {name: ancient, suite: buster}
  docker: [distro, "20.10.24", {version: "20.10.24", suite: bookworm-backports}]
  driver: [vfs]
`)
	want := map[string]string{
		"k6.1-debian12-docker20.10.24-vfs":   "",
		"k6.1-debian12-docker20.10.24-vfs-2": "",
		"k6.1-debian12-docker20.10.24-vfs-3": "",
		"k6.1-debian13-docker26.1.5-vfs":     "",
		"k6.1-debian13-docker20.10.24-vfs":   "docker 20.10.24 has no docker.io package for debian13 (trixie ships docker.io 26.1.5)",
		"k6.1-debian13-docker20.10.24-vfs-2": "pinned to suite bookworm-backports has no package for debian13",
		"k6.1-custom-docker20.10.24-vfs":     "",
		"k6.1-custom-docker20.10.24-vfs-2":   "",
		"k6.1-custom-docker20.10.24-vfs-3":   "",

		"k6.1-ancient-dockerunknown-vfs":    "no docker.io version is known for distro ancient (suite buster)",
		"k6.1-ancient-docker20.10.24-vfs":   "has no docker.io package for ancient (buster ships no known docker.io)",
		"k6.1-ancient-docker20.10.24-vfs-2": "pinned to suite bookworm-backports has no package for ancient",
	}
	if len(cells) != len(want) {
		t.Fatalf("cells %v", ids(cells))
	}
	for _, c := range cells {
		reason, ok := want[c.ID]
		switch {
		case !ok:
			t.Errorf("unexpected cell %s", c.ID)
		case reason == "" && c.Status != StatusRunnable:
			t.Errorf("%s: %s %q, want runnable", c.ID, c.Status, c.Reason)
		case reason != "" && (c.Status != StatusUnsupported || !strings.Contains(c.Reason, reason)):
			t.Errorf("%s: %s %q, want unsupported with %q", c.ID, c.Status, c.Reason, reason)
		}
	}
}

var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func TestCellIDs(t *testing.T) {
	s, err := Load("../matrix.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := s.Plan()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := s.Plan()
	seen := map[string]bool{}
	for i, c := range cells {
		if !safeID.MatchString(c.ID) || seen[c.ID] {
			t.Errorf("ID %q is unsafe or duplicate", c.ID)
		}
		seen[c.ID] = true
		if again[i].ID != c.ID {
			t.Errorf("IDs are not stable: %s vs %s", c.ID, again[i].ID)
		}
	}
	for _, id := range []string{"k6.1-debian12-docker20.10.24-overlay2-scratch-xfs", "k5.10-debian11-docker20.10.5-aufs", "k6.12-debian13-docker26.1.5-devicemapper"} {
		if !seen[id] {
			t.Errorf("missing cell %s in %v", id, ids(cells))
		}
	}

	// Two kernels with the same version from different sources collide;
	// only the second gets a suffix.
	cells = mustPlan(t, "collide.yaml", header+`
axes:
  kernel:
    - {version: "6.1", debian: {suite: bookworm}}
    - {version: "6.1", local: {vmlinuz: /srv/vmlinuz-6.1-custom}}
  distro: [debian12]
  docker: [distro]
  driver: [vfs]
`)
	if got := strings.Join(ids(cells), " "); got != "k6.1-debian12-docker20.10.24-vfs k6.1-debian12-docker20.10.24-vfs-2" {
		t.Errorf("colliding IDs: %s", got)
	}
	if cells[1].Kernel.Vmlinuz != "/srv/vmlinuz-6.1-custom" {
		t.Errorf("second cell has kernel %+v", cells[1].Kernel)
	}

	// A suffix never takes another cell's base ID.
	c := []Cell{
		{Kernel: KernelRef{Version: "1"}, Distro: DistroRef{Name: "d"}, Docker: DockerRef{Version: "2"}, Driver: "vfs"},
		{Kernel: KernelRef{Version: "1"}, Distro: DistroRef{Name: "d"}, Docker: DockerRef{Version: "2"}, Driver: "vfs"},
		{Kernel: KernelRef{Version: "1"}, Distro: DistroRef{Name: "d"}, Docker: DockerRef{Version: "2"}, Driver: "vfs-2"},
	}
	assignIDs(c)
	if got := strings.Join(ids(c), " "); got != "k1-d-docker2-vfs k1-d-docker2-vfs-3 k1-d-docker2-vfs-2" {
		t.Errorf("IDs %s", got)
	}
	if got := CellID(Cell{Kernel: KernelRef{Version: "6.1"}, Distro: DistroRef{Name: "a/../b c"}, Docker: DockerRef{}, Driver: "x"}); got != "k6.1-a_.._b_c-dockerunknown-x" {
		t.Errorf("sanitised ID %q", got)
	}
}

func TestVersionsKeepTheirText(t *testing.T) {
	cells := mustPlan(t, "v.yaml", header+`
axes:
  kernel:
    - version: 6.10
      debian: {suite: trixie}
    - version: 5.10
      debian: {suite: bullseye}
  distro: [debian13]
  docker: [distro]
  driver: [overlay2]
`)
	if cells[0].Kernel.Version != "6.10" || cells[1].Kernel.Version != "5.10" {
		t.Errorf("versions %q %q; want 6.10 and 5.10 as written", cells[0].Kernel.Version, cells[1].Kernel.Version)
	}
}

func TestAliases(t *testing.T) {
	cells := mustPlan(t, "alias.yaml", header+`
axes:
  kernel:
    - &k {version: "6.1", debian: {suite: bookworm}}
  distro: &d [debian12]
  docker: [distro]
  driver: [vfs, overlay2]
include:
  - {driver: vfs, faults: &f [sysrq-panic]}
  - {driver: overlay2, faults: *f}
`)
	for _, c := range cells {
		if len(c.Settings.Faults) != 1 || c.Settings.Faults[0] != "sysrq-panic" {
			t.Errorf("%s: faults %v", c.ID, c.Settings.Faults)
		}
	}
	_, err := Parse("bad-alias.yaml", []byte(header+"axes: *nope\n"))
	if err == nil || !strings.Contains(err.Error(), "bad-alias.yaml:") {
		t.Errorf("unknown alias: %v", err)
	}
}

func TestAllErrorsAreReported(t *testing.T) {
	_, err := Parse("many.yaml", []byte(`apiVersion: matrixctl/v1
kind: Matrix
axes:
  kernel:
    - {version: "6.x", debian: {suite: bookworm}}
  distro: [debian12, debian12, debian77]
  docker: [distro]
  driver: [overlay3]
soak: forever
colour: blue
`))
	var errs interface{ Unwrap() []error }
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not a join", err)
	}
	for _, want := range []string{
		`many.yaml:5:17: axes.kernel[0].version: "6.x" is not a version`,
		`many.yaml:6:32: axes.distro[2]: unknown distro "debian77"`,
		`many.yaml:8:12: axes.driver[0]: unknown storage driver "overlay3"`,
		`many.yaml:9:7: soak: "forever" is not a positive duration`,
		`many.yaml:10:1: colour: unknown field "colour"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, e := range errs.Unwrap() {
		var se *SpecError
		if !errors.As(e, &se) || se.Line == 0 || se.Key == "" {
			t.Errorf("error %v lacks a position or key", e)
		}
	}
}

func TestMaxCells(t *testing.T) {
	var b strings.Builder
	b.WriteString(header + "axes:\n  kernel:\n")
	for i := range 40 {
		fmt.Fprintf(&b, "    - {version: \"6.1.%d\", debian: {suite: bookworm}}\n", i)
	}
	b.WriteString("  distro: [debian11, debian12, debian13]\n  docker: [distro, \"1.0\", \"2.0\", \"3.0\", \"4.0\"]\n  driver: [aufs, overlay, overlay2, devicemapper, btrfs, vfs, zfs, fuse-overlayfs]\n")
	_, err := Parse("big.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 4096 cells") {
		t.Errorf("got %v", err)
	}
}

// init and cgroup are settings (top level and include entries); a cell whose
// value is not the default is another kind of host and says so in its ID;
// a combination the distro's systemd refuses is unsupported with the reason.
func TestInitAndCgroupSettings(t *testing.T) {
	cells := mustPlan(t, "init.yaml", header+`
axes:
  kernel:
    - {version: "6.1", debian: {suite: bookworm}}
  distro: [debian12, debian13]
  docker: [distro]
  driver: [overlay2, vfs, btrfs]
init: systemd
cgroup: v1
include:
  - {driver: vfs, init: agent, cgroup: v2}
  - {distro: debian12, driver: overlay2, cgroup: v2}
  - {driver: btrfs, init: agent, cgroup: distro}
`)
	type want struct {
		init, cgroup string
		status       Status
		reason       string
	}
	wants := map[string]want{
		"k6.1-debian12-docker20.10.24-overlay2-cgroupv2":       {"systemd", "v2", StatusRunnable, ""},
		"k6.1-debian13-docker26.1.5-overlay2-cgroupv1":         {"systemd", "v1", StatusUnsupported, "systemd 257 refuses cgroup v1"},
		"k6.1-debian12-docker20.10.24-vfs-init-agent-cgroupv2": {"agent", "v2", StatusUnsupported, "init: agent mounts cgroup v1"},
		"k6.1-debian13-docker26.1.5-vfs-init-agent-cgroupv2":   {"agent", "v2", StatusUnsupported, "init: agent mounts cgroup v1"},
		"k6.1-debian12-docker20.10.24-btrfs-init-agent":        {"agent", "distro", StatusRunnable, ""},
		"k6.1-debian13-docker26.1.5-btrfs-init-agent":          {"agent", "distro", StatusRunnable, ""},
	}
	if len(cells) != len(wants) {
		t.Errorf("cells %v, want %d", ids(cells), len(wants))
	}
	for _, c := range cells {
		w, ok := wants[c.ID]
		if !ok {
			t.Errorf("unexpected cell %s", c.ID)
			continue
		}
		if c.Settings.Init != w.init || c.Settings.Cgroup != w.cgroup || c.Status != w.status || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("%s: init %q cgroup %q %s (%s); want %+v", c.ID, c.Settings.Init, c.Settings.Cgroup, c.Status, c.Reason, w)
		}
	}
	_, err := Parse("bad.yaml", []byte(header+`
axes: {kernel: ["6.1"], distro: [debian12], docker: [distro], driver: [vfs]}
init: openrc
cgroup: v3
`))
	for _, key := range []string{"init", "cgroup"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("bad %s not reported: %v", key, err)
		}
	}
}

// TestCellIDHostSettings: every setting that makes a different host is in
// the ID when it is not the default, and only then (default IDs stay).
func TestCellIDHostSettings(t *testing.T) {
	other := InitSystemd
	if DefaultInit == InitSystemd {
		other = InitAgent
	}
	base := "k6.1-debian12-docker20.10.24-overlay2"
	tests := []struct {
		name string
		set  Settings
		want string
	}{
		{"defaults", Settings{}, base},
		{"default init named", Settings{Init: DefaultInit}, base},
		{"other init", Settings{Init: other}, base + "-init-" + other},
		{"default cgroup named", Settings{Cgroup: CgroupDistro}, base},
		{"cgroup v1", Settings{Cgroup: "v1"}, base + "-cgroupv1"},
		{"driver's default scratch fs", Settings{ScratchFS: "ext4"}, base},
		{"scratch xfs", Settings{ScratchFS: "xfs"}, base + "-scratch-xfs"},
		{"crash check", Settings{CrashCheck: true}, base + "-crashcheck"},
		{"faults sorted", Settings{Faults: []string{"sysrq-panic", "hung-task"}}, base + "-fault-hung-task-fault-sysrq-panic"},
		{"probabilistic fault", Settings{Faults: []string{"sysrq-panic", "hung-task"}, FaultProbability: map[string]float64{"sysrq-panic": 0.3}},
			base + "-fault-hung-task-fault-sysrq-panic-p30"},
		{"probability under 1 %", Settings{Faults: []string{"sysrq-panic"}, FaultProbability: map[string]float64{"sysrq-panic": 0.025}},
			base + "-fault-sysrq-panic-p2.5"},
		{"package added", Settings{Packages: PackageChanges{Add: []string{"strace"}}}, base + "-add-strace"},
		{"package removed", Settings{Packages: PackageChanges{Remove: []string{"apparmor"}}}, base + "-remove-apparmor"},
		{"packages sorted, unsafe characters", Settings{Packages: PackageChanges{Add: []string{"strace", "libstdc++6"}, Remove: []string{"apparmor"}}},
			base + "-add-libstdc_6-add-strace-remove-apparmor"},
		{"all of them, in order", Settings{Init: other, Cgroup: "v2", ScratchFS: "xfs", CrashCheck: true, Faults: []string{"sysrq-panic"},
			Packages: PackageChanges{Add: []string{"strace"}}},
			base + "-init-" + other + "-cgroupv2-scratch-xfs-crashcheck-fault-sysrq-panic-add-strace"},
		{"run settings are not identity", Settings{Probes: []string{"io"}, Soak: 1, Repeats: 3, CPUs: 1, MemoryMB: 512}, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Cell{Kernel: KernelRef{Version: "6.1"}, Distro: DistroRef{Name: "debian12"}, Docker: DockerRef{Version: "20.10.24"},
				Driver: "overlay2", Settings: tt.set}
			if got := CellID(c); got != tt.want {
				t.Errorf("CellID = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPackagesSetting: packages at the top level apply to every cell, an
// include entry replaces them for the cells it matches or adds a cell with
// them, and the IDs keep the cells apart.
func TestPackagesSetting(t *testing.T) {
	cells := mustPlan(t, "pkgs.yaml", header+`
axes:
  kernel: [{version: "6.1", debian: {suite: bookworm}}]
  distro: [debian12]
  docker: [distro]
  driver: [overlay2, vfs, btrfs]
packages: {add: [strace]}
include:
  - {driver: vfs, packages: {remove: [apparmor]}}
  - {kernel: "6.1", distro: debian12, driver: overlay2, packages: {add: [gdb, strace]}}
  - {kernel: "6.1", distro: debian12, docker: distro, driver: devicemapper, packages: {remove: [iptables]}}
`)
	got := map[string]PackageChanges{}
	for _, c := range cells {
		got[c.ID] = c.Settings.Packages
	}
	want := map[string]PackageChanges{
		"k6.1-debian12-docker20.10.24-btrfs-add-strace":             {Add: []string{"strace"}},
		"k6.1-debian12-docker20.10.24-vfs-remove-apparmor":          {Remove: []string{"apparmor"}},
		"k6.1-debian12-docker20.10.24-overlay2-add-gdb-add-strace":  {Add: []string{"gdb", "strace"}},
		"k6.1-debian12-docker20.10.24-devicemapper-remove-iptables": {Remove: []string{"iptables"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("packages by cell = %+v, want %+v", got, want)
	}
	// --cell patterns select by the new suffixes.
	sel, err := Filter{Cell: []string{"*-remove-apparmor"}}.Apply(cells)
	if err != nil || len(sel) != 1 || sel[0].Driver != "vfs" {
		t.Errorf("--cell *-remove-apparmor = %v, %v", ids(sel), err)
	}
	var b strings.Builder
	if err := WriteJSON(&b, cells[:1], nil); err != nil || !strings.Contains(b.String(), `"packages": {`) {
		t.Errorf("plan JSON lacks packages (%v):\n%s", err, b.String())
	}
	b.Reset()
	if err := WriteTable(&b, cells[1:2], nil); err != nil || !strings.Contains(b.String(), "packages -apparmor") {
		t.Errorf("plan table lacks packages (%v):\n%s", err, b.String())
	}
}

// TestPackagesRoundTrip: a cell's package changes survive the JSON of the
// --resume journal's plan; a cell without any writes no packages key.
func TestPackagesRoundTrip(t *testing.T) {
	for _, p := range []PackageChanges{{}, {Add: []string{"strace"}, Remove: []string{"apparmor", "iptables"}}} {
		c := Cell{ID: "c", Settings: Settings{Packages: p}}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Cell
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Settings.Packages, p) {
			t.Errorf("packages %+v came back as %+v from %s", p, back.Settings.Packages, b)
		}
		if p.Empty() && strings.Contains(string(b), "packages") {
			t.Errorf("a cell without package changes writes them: %s", b)
		}
	}
}

// TestProbabilisticFaults: a fault is a name or {name, probability}; the
// probability reaches the settings and the ID; bad ones are errors.
func TestProbabilisticFaults(t *testing.T) {
	cells := mustPlan(t, "flaky.yaml", header+`
axes:
  kernel:
    - {version: "6.1", debian: {suite: bookworm}}
  distro: [debian12]
  docker: [distro]
  driver: [overlay2, vfs]
include:
  - {driver: vfs, faults: [{name: sysrq-panic, probability: 0.3}, hung-task]}
`)
	var got []string
	for _, c := range cells {
		got = append(got, c.ID)
		if c.Driver == "vfs" && (c.Settings.FaultProbability["sysrq-panic"] != 0.3 || len(c.Settings.Faults) != 2) {
			t.Errorf("%s: faults %v, probabilities %v", c.ID, c.Settings.Faults, c.Settings.FaultProbability)
		}
	}
	want := []string{"k6.1-debian12-docker20.10.24-overlay2", "k6.1-debian12-docker20.10.24-vfs-fault-hung-task-fault-sysrq-panic-p30"}
	if !slices.Equal(got, want) {
		t.Errorf("IDs = %q, want %q", got, want)
	}
	for _, bad := range []string{
		"faults: [{name: sysrq-panic, probability: 1.5}]",
		"faults: [{name: sysrq-panic, probability: 1}]",
		"faults: [{probability: 0.5}]",
		"faults: [{name: sysrq-panic}]",
		"faults: [{name: nope, probability: 0.5}]",
		"faults: [sysrq-panic, {name: sysrq-panic, probability: 0.5}]",
	} {
		_, err := Parse("bad.yaml", []byte(header+"axes: {kernel: [{version: \"6.1\", debian: {suite: bookworm}}], distro: [debian12], docker: [distro], driver: [vfs]}\n"+bad+"\n"))
		if err == nil || !strings.Contains(err.Error(), "faults") {
			t.Errorf("%s: err = %v, want an error naming faults", bad, err)
		}
	}
}
