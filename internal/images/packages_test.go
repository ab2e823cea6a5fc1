package images

import (
	"reflect"
	"strings"
	"testing"
)

func TestRemovedPackages(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]string
		want          []string
	}{
		{"nothing removed", map[string]string{"a": "1"}, map[string]string{"a": "1"}, nil},
		{"the package and what depends on it, sorted",
			map[string]string{"iptables": "1.8.9-2", "docker.io": "20.10.24+dfsg1-1+deb12u1", "tini": "0.19.0-1"},
			map[string]string{"tini": "0.19.0-1"},
			[]string{"docker.io 20.10.24+dfsg1-1+deb12u1", "iptables 1.8.9-2"}},
		{"an added package is not a removal", map[string]string{"a": "1"}, map[string]string{"a": "1", "b": "2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := removedPackages(tt.before, tt.after); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("removedPackages = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRemoveHooks(t *testing.T) {
	if h := removeHooks("/tmp/x", nil); h != nil {
		t.Errorf("no removals: hooks %q", h)
	}
	h := removeHooks("/c/it's", []string{"apparmor", "iptables"})
	want := []string{
		`--customize-hook=cp "$1/var/lib/dpkg/status" '/c/it'\''s/` + statusBefore + `'`,
		`--customize-hook=chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -- apparmor iptables`,
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("hooks:\n%s\nwant:\n%s", strings.Join(h, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckDocker: an upstream or an exact Debian version asks for the
// build; a removed Docker is no Docker.
func TestCheckDocker(t *testing.T) {
	installed := map[string]string{"docker.io": "20.10.5+dfsg1-1+deb11u4"}
	for _, want := range []string{"20.10.5", "20.10.5+dfsg1-1+deb11u4"} {
		if got, err := checkDocker(installed, nil, "docker.io", want); err != nil || got != installed["docker.io"] {
			t.Errorf("want %s: %q, %v", want, got, err)
		}
	}
	for _, want := range []string{"20.10.24", "20.10.5+dfsg1-1+deb11u2"} {
		if _, err := checkDocker(installed, nil, "docker.io", want); err == nil {
			t.Errorf("want %s: the deb11u4 build passed", want)
		}
	}
	if got, err := checkDocker(map[string]string{}, []string{"docker.io 20.10.5+dfsg1-1+deb11u4"}, "docker.io", "20.10.5"); err != nil || got != "" {
		t.Errorf("removed docker: %q, %v", got, err)
	}
	if _, err := checkDocker(map[string]string{}, nil, "docker.io", "20.10.5"); err == nil {
		t.Error("a rootfs without docker.io passed")
	}
}
