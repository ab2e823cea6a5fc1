package main

import (
	"encoding/json"
	"errors"
	"github.com/matrixctl/matrixctl/internal/drivers"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestResolveIn(t *testing.T) {
	links := map[string]string{
		"/r/lib":      "usr/lib",  // merged /usr, relative (Debian)
		"/a/lib":      "/usr/lib", // merged /usr, absolute
		"/l/lib":      "/lib",     // a loop
		"/d/usr/lib":  "../opt/lib",
		"/d/opt/lib2": "x",
	}
	readlink := func(p string) (string, error) {
		if t, ok := links[p]; ok {
			return t, nil
		}
		return "", errors.New("not a symlink")
	}
	cases := []struct{ root, in, want string }{
		{"/r", "/lib/modules/6.1.0-28-amd64", "/r/usr/lib/modules/6.1.0-28-amd64"},
		{"/a", "/lib/modules/6.1.0-28-amd64", "/a/usr/lib/modules/6.1.0-28-amd64"},
		{"/p", "/lib/modules/5.10.0-33-amd64", "/p/lib/modules/5.10.0-33-amd64"}, // split /usr: no link
		{"/d", "/usr/lib/modules", "/d/opt/lib/modules"},
	}
	for _, c := range cases {
		got, err := resolveIn(c.root, c.in, readlink)
		if err != nil || got != c.want {
			t.Errorf("resolveIn(%s, %s) = %q, %v; want %q", c.root, c.in, got, err, c.want)
		}
	}
	if _, err := resolveIn("/l", "/lib/modules", readlink); err == nil {
		t.Error("a symlink loop resolved without error")
	}
}

func TestGuestUnit(t *testing.T) {
	u := guestUnit(guestBinary)
	for _, want := range []string{
		"Before=docker.service containerd.service shutdown.target",
		"Type=notify",
		"ExecStart=/run/matrixctl/matrixctl-agent guest",
		"DefaultDependencies=no",
		"Conflicts=shutdown.target",
	} {
		if !strings.Contains(u, want+"\n") {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
	files := guestFiles()
	if got := files["/run/systemd/system/multi-user.target.wants/matrixctl-agent.service"]; got != "->../matrixctl-agent.service" {
		t.Errorf("wants link = %q", got)
	}
	for p := range files {
		if !strings.HasPrefix(p, "/run/") {
			t.Errorf("%s: the guest side must live under /run only", p)
		}
	}
}

func TestDaemonConfig(t *testing.T) {
	for _, name := range drivers.Names() {
		spec, _ := lookupDriver(name)
		b, err := daemonConfig(&preparedDriver{name: name, spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v: %s", name, err, b)
		}
		want := map[string]any{"storage-driver": name, "data-root": "/var/lib/docker"}
		if name == "devicemapper" {
			want["storage-opts"] = []any{"dm.thinpooldev=/dev/mapper/docker-thinpool", "dm.use_deferred_removal=true", "dm.use_deferred_deletion=true"}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: daemon.json %s, want %v", name, b, want)
		}
	}
}

func TestInstallGuest(t *testing.T) {
	root := t.TempDir()
	if err := installGuest(root); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(root + guestBinary); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("agent binary: %v %v", st, err)
	}
	unit, err := os.ReadFile(root + "/run/systemd/system/matrixctl-agent.service")
	if err != nil || string(unit) != guestUnit(guestBinary) {
		t.Errorf("unit file: %v\n%s", err, unit)
	}
	if _, err := os.Stat(root + "/run/systemd/system/multi-user.target.wants/matrixctl-agent.service"); err != nil {
		t.Errorf("wants link does not lead to the unit: %v", err)
	}
}

// configure applies the defaults the host relies on; a cmdline without
// matrixctl.init boots the distro's systemd (agentproto.DefaultInit).
func TestConfigure(t *testing.T) {
	a := newAgent()
	a.configure("console=ttyS0,115200 panic=-1 net.ifnames=0 matrixctl.driver=vfs")
	if a.cfg.Channel != "/dev/ttyS1" || a.cfg.DockerdTimeoutS != 180 || a.cfg.Driver != "vfs" {
		t.Errorf("defaults: %+v", a.cfg)
	}
	if a.cfg.InitMode() != "systemd" {
		t.Errorf("init mode %q, want systemd", a.cfg.InitMode())
	}
	a.configure("matrixctl.init=agent")
	if a.cfg.InitMode() != "agent" {
		t.Errorf("init mode %q, want agent", a.cfg.InitMode())
	}
	a.configure("matrixctl.init=systemd matrixctl.cgroup=v1 matrixctl.dockerd_timeout=30")
	if a.cfg.InitMode() != "systemd" || a.cfg.Cgroup != "v1" || a.cfg.DockerdTimeoutS != 30 {
		t.Errorf("explicit: %+v", a.cfg)
	}
}
