package drivers

import (
	"slices"
	"strings"
	"testing"
)

// TestTable checks each row's facts are consistent and each cites a source
// a user can open.
func TestTable(t *testing.T) {
	cited := func(name, fact string, s Source) {
		if s.Title == "" || !strings.HasPrefix(s.URL, "https://") {
			t.Errorf("%s: %s has no title and URL to cite: %+v", name, fact, s)
		}
	}
	seen := map[string]bool{}
	for _, d := range All() {
		if d.Name == "" || seen[d.Name] {
			t.Errorf("driver %q is unnamed or listed twice", d.Name)
		}
		seen[d.Name] = true
		if !slices.Contains(d.ScratchAllowed, d.ScratchDefault) {
			t.Errorf("%s: default scratch %q is not among the allowed %v", d.Name, d.ScratchDefault, d.ScratchAllowed)
		}
		if slices.Contains(d.ScratchAllowed, Raw) && len(d.ScratchAllowed) > 1 {
			t.Errorf("%s: a raw-disk driver runs on nothing else, got %v", d.Name, d.ScratchAllowed)
		}
		if d.RawChecker != "" && d.ScratchDefault != Raw {
			t.Errorf("%s: a raw checker for a driver that does not take the raw disk", d.Name)
		}
		cited(d.Name, "the scratch filesystems", d.ScratchSource)
		for _, k := range d.Kernel {
			if !strings.HasPrefix(k.Config, "CONFIG_") || k.Module == "" {
				t.Errorf("%s: kernel need %+v lacks a config symbol or a module", d.Name, k)
			}
			cited(d.Name, k.Config, k.Source)
		}
		for _, r := range []struct {
			fact string
			rel  Release
		}{{"added", d.Added}, {"deprecated", d.Deprecated}, {"removed", d.Removed}, {"minimum kernel", d.MinKernel}} {
			if r.rel.Version != "" {
				cited(d.Name, r.fact, r.rel.Source)
			}
		}
	}
}

// TestZFSTakesTheRawDisk pins the fix of an old disagreement: the planner
// said zfs's default scratch was "zfs", the agent accepted only "raw".
func TestZFSTakesTheRawDisk(t *testing.T) {
	if got := DefaultScratchFS("zfs"); got != Raw {
		t.Errorf("DefaultScratchFS(zfs) = %q, want %q", got, Raw)
	}
}

func TestCheckedFS(t *testing.T) {
	for _, tc := range []struct{ driver, fs, want string }{
		{"devicemapper", Raw, "thin"},
		{"zfs", Raw, Raw},
		{"overlay2", "xfs", "xfs"},
		{"btrfs", "btrfs", "btrfs"},
		{"no-such-driver", "ext4", "ext4"},
	} {
		if got := CheckedFS(tc.driver, tc.fs); got != tc.want {
			t.Errorf("CheckedFS(%s, %s) = %q, want %q", tc.driver, tc.fs, got, tc.want)
		}
	}
}

func TestSourceString(t *testing.T) {
	s := Source{Title: "Docker docs: Deprecated Engine Features", Section: "AuFS storage driver", URL: "https://docs.docker.com/engine/deprecated/"}
	want := "Docker docs: Deprecated Engine Features § AuFS storage driver, https://docs.docker.com/engine/deprecated/"
	if got := s.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
