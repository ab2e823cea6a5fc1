package agentproto

import (
	"errors"
	"strings"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	msgs := []Message{
		{V: Version, Type: TypeHello, Release: "6.1.0-28-amd64"},
		{V: Version, Type: TypeState, State: StateDockerReady, DockerVersion: "20.10.24"},
		{V: Version, Type: TypeState, State: StateDockerReady, DockerVersion: "20.10.24",
			Init: "systemd 252 (252.39-1~deb12u1)", Cmdline: "console=ttyS0,115200 panic=-1 net.ifnames=0 matrixctl.init=systemd"},
		{V: Version, Type: TypeLog, Source: SourceJournal, Line: "[    3.1] systemd[1]: Started docker.service"},
		{V: Version, Type: TypeState, State: StateUnsupported, Reason: "no aufs"},
		{V: Version, Type: TypeHeartbeat, Seq: 7, State: StateBooted},
		{V: Version, Type: TypeLog, Source: SourceDockerd, Line: "level=info \"quoted\" \x1b[31m"},
		{V: Version, Type: TypeReply, ID: 3, Error: "boom"},
		{V: Version, Type: TypeShutdown},
		{V: Version, Type: TypeDockerExit, UptimeMS: 61234, Reason: "dockerd (pid 612) exited; docker.service: Restart=always NRestarts=0 Result=success"},
	}
	for _, m := range msgs {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), "\n") != 1 {
			t.Errorf("%+v encodes to %q: want exactly one line", m, b)
		}
		got, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if got != m {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	cases := map[string]string{
		"noise":         "[    1.2] ttyS1 ready",
		"empty":         "",
		"old version":   `{"v":0,"type":"hello","release":"x"}`,
		"unknown type":  `{"v":1,"type":"bogus"}`,
		"unknown state": `{"v":1,"type":"state","state":"dancing"}`,
		"hello no rel":  `{"v":1,"type":"hello"}`,
		"trailing":      `{"v":1,"type":"shutdown"} {"v":1}`,
		"reply no id":   `{"v":1,"type":"reply"}`,
		"exit no why":   `{"v":1,"type":"docker-exit"}`,
	}
	for name, line := range cases {
		if _, err := DecodeMessage([]byte(line)); err == nil {
			t.Errorf("%s: %q decoded without error", name, line)
		}
	}
	_, err := DecodeMessage([]byte(`{"v":2,"type":"hello","release":"x"}`))
	if !errors.Is(err, ErrVersion) {
		t.Errorf("v2: got %v, want ErrVersion", err)
	}
}

func TestCommandValidate(t *testing.T) {
	ok := []Command{
		{Op: OpShutdown}, {Op: OpSysrq, Arg: "c"}, {Op: OpFreeze, Arg: "/var/lib/docker"},
		{Op: OpThaw, Arg: "/var/lib/docker"}, {Op: OpKillDockerd}, {Op: OpDockerCheck},
		{Op: OpSysctl, Arg: "kernel.hung_task_timeout_secs", Value: "2"}, {Op: OpWriteLoop, Arg: "/var/lib/docker/w"},
		{Op: OpWriteLoop, Arg: "/var/lib/docker/w", Value: "17"},
	}
	for _, c := range ok {
		c.V, c.ID = Version, 1
		b, _ := Encode(c)
		got, err := DecodeCommand(b)
		if err != nil || got != c {
			t.Errorf("%+v: got %+v, %v", c, got, err)
		}
	}
	bad := []Command{
		{Op: "exec", Arg: "/bin/sh"}, {Op: OpSysrq, Arg: "cc"}, {Op: OpSysrq, Arg: ";"},
		{Op: OpFreeze, Arg: "relative"}, {Op: OpSysctl, Arg: "../../etc/passwd", Value: "x"},
		{Op: OpSysctl, Arg: "kernel/panic", Value: "1"}, {Op: OpSysctl, Arg: "kernel.panic", Value: "1\n2"},
		{Op: OpWriteLoop, Arg: ""}, {Op: OpWriteLoop, Arg: "/w", Value: "0"}, {Op: OpWriteLoop, Arg: "/w", Value: "1s"},
		{Op: OpWriteLoop, Arg: "/w", Value: "99999999"},
	}
	for _, c := range bad {
		c.V, c.ID = Version, 1
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := (Command{V: Version, Op: OpShutdown}).Validate(); err == nil {
		t.Error("command without id validated")
	}
}

func TestBootConfigRoundTrip(t *testing.T) {
	c := BootConfig{Driver: "overlay2", ScratchFS: "xfs", Channel: "/dev/ttyS1", DockerdTimeoutS: 300, DockerdDebug: true, ReuseScratch: true,
		Init: InitAgent, Cgroup: CgroupV1}
	p, err := c.Params()
	if err != nil {
		t.Fatal(err)
	}
	line := "console=ttyS0 panic=-1 " + strings.Join(p, " ") + " quiet"
	got, err := ParseCmdline(line)
	if err != nil || got != c {
		t.Fatalf("ParseCmdline(%q) = %+v, %v; want %+v", line, got, err, c)
	}
	for _, bad := range []string{"matrixctl.driver=a;b", "matrixctl.unknown=1", "matrixctl.channel=/etc/passwd",
		"matrixctl.dockerd_timeout=-1", "matrixctl.channel=/dev/../etc", "matrixctl.init=openrc", "matrixctl.cgroup=v3"} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := (BootConfig{Driver: "over lay"}).Params(); err == nil {
		t.Error("driver with a space rendered")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"hello","release":"6.1.0"}`))
	f.Add([]byte(`{"v":1,"type":"log","source":"dockerd","line":"x"}`))
	f.Add([]byte(`{"v":1,"type":"state","state":"docker-ready","docker_version":"20.10.24"}`))
	f.Add([]byte(`{"v":1,"type":"state","state":"docker-ready","docker_version":"26.1.5","init":"systemd 257","cmdline":"panic=-1"}`))
	f.Add([]byte("[ 0.1] noise"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeMessage(enc)
		if err != nil || m2 != m {
			t.Fatalf("re-decode of %q: %+v, %v; want %+v", enc, m2, err, m)
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":1,"op":"sysrq","arg":"c"}`))
	f.Add([]byte(`{"v":1,"id":2,"op":"sysctl","arg":"kernel.panic","value":"1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded command %+v does not validate: %v", c, err)
		}
		if c.Op == OpSysctl && strings.Contains(c.Arg, "..") {
			t.Fatalf("sysctl key escapes /proc/sys: %q", c.Arg)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 matrixctl.driver=overlay2 matrixctl.scratchfs=ext4 matrixctl.channel=/dev/ttyS1")
	f.Add("matrixctl.dockerd_timeout=30 matrixctl.dockerd_debug=1")
	f.Add("matrixctl.init=systemd matrixctl.cgroup=v1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		p, err := c.Params()
		if err != nil {
			t.Fatalf("parsed %+v does not render: %v", c, err)
		}
		c2, err := ParseCmdline(strings.Join(p, " "))
		if err != nil || c2 != c {
			t.Fatalf("re-parse: %+v, %v; want %+v", c2, err, c)
		}
	})
}

func TestInitParams(t *testing.T) {
	cases := []struct {
		c    BootConfig
		want string
	}{
		{BootConfig{}, "net.ifnames=0"}, // DefaultInit: systemd
		{BootConfig{Init: InitSystemd, Cgroup: CgroupDistro}, "net.ifnames=0"},
		{BootConfig{Init: InitSystemd, Cgroup: CgroupV1}, "net.ifnames=0 systemd.unified_cgroup_hierarchy=0"},
		{BootConfig{Init: InitSystemd, Cgroup: CgroupV2}, "net.ifnames=0 systemd.unified_cgroup_hierarchy=1"},
		{BootConfig{Init: InitAgent}, ""},
	}
	for _, tc := range cases {
		if got := strings.Join(tc.c.InitParams(), " "); got != tc.want {
			t.Errorf("%+v: InitParams %q, want %q", tc.c, got, tc.want)
		}
	}
}

// Every kernel parameter the harness adds for an init is listed as a harness change.
func TestHarnessChangesListInitParams(t *testing.T) {
	for _, c := range []BootConfig{{}, {Cgroup: CgroupV1}, {Cgroup: CgroupV2}, {Init: InitAgent}} {
		var text strings.Builder
		for _, h := range HarnessChanges(c) {
			if h.What == "" || h.Why == "" {
				t.Errorf("%+v: change %+v lacks what or why", c, h)
			}
			text.WriteString(h.What + "\n")
		}
		for _, p := range c.InitParams() {
			if !strings.Contains(text.String(), p) {
				t.Errorf("%+v: kernel parameter %s is not listed in HarnessChanges:\n%s", c, p, text.String())
			}
		}
		agentRow := strings.Contains(text.String(), "the agent is PID 1")
		if agentRow != (c.InitMode() == InitAgent) {
			t.Errorf("%+v: agent-as-PID-1 row listed = %v", c, agentRow)
		}
	}
}

// devicemapper's set-up is recorded per init: the hand-built dmsetup pool
// without udev sync is a cost of the agent init only; under systemd the
// rows name Docker's direct-lvm steps and no hand-built pool.
func TestHarnessChangesDevicemapper(t *testing.T) {
	cases := []struct {
		c             BootConfig
		want, without []string
	}{
		{BootConfig{Driver: "devicemapper", Init: InitSystemd}, []string{"direct-lvm", "pvcreate", "docker-thinpool.profile"},
			[]string{"dmsetup", "noudevsync", "override_udev_sync_check", "mx-thinpool"}},
		{BootConfig{Driver: "devicemapper", Init: InitAgent}, []string{"dmsetup create --noudevsync", "dm.override_udev_sync_check=true"},
			[]string{"direct-lvm guide on", "pvcreate"}},
		{BootConfig{Driver: "devicemapper"}, []string{"direct-lvm", "pvcreate"}, []string{"dmsetup", "noudevsync"}}, // the default init is systemd
		{BootConfig{Driver: "overlay2", Init: InitSystemd}, nil, []string{"dmsetup", "pvcreate", "thin pool"}},
		{BootConfig{Driver: "overlay2", Init: InitAgent}, nil, []string{"dmsetup", "pvcreate", "thin pool"}},
	}
	for _, tc := range cases {
		var text strings.Builder
		for _, h := range HarnessChanges(tc.c) {
			text.WriteString(h.What + " / " + h.Why + "\n")
		}
		for _, w := range tc.want {
			if !strings.Contains(text.String(), w) {
				t.Errorf("%+v: no harness change mentions %q:\n%s", tc.c, w, text.String())
			}
		}
		for _, w := range tc.without {
			if strings.Contains(text.String(), w) {
				t.Errorf("%+v: a harness change mentions %q:\n%s", tc.c, w, text.String())
			}
		}
	}
}
