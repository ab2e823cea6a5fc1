package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

// A reply to query-named-block-nodes from QEMU 7.2 after InjectIOErrors
// (shortened: the real entries carry many more fields).
const armedReply = `{"return": [` +
	`{"iops_rd": 0, "detect_zeroes": "off", "ro": false, "node-name": "scratch-eio", "drv": "blkdebug", ` +
	`"file": "json:{\"image\": {\"driver\": \"file\", \"filename\": \"/tmp/s.img\"}, \"driver\": \"blkdebug\", \"inject-error.0.event\": \"read_aio\", \"inject-error.0.errno\": 5}"},` +
	`{"node-name": "scratch-fmt", "drv": "raw", "ro": false, ` +
	`"file": "json:{\"driver\": \"raw\", \"file\": {\"image\": {\"driver\": \"file\", \"filename\": \"/tmp/s.img\"}, \"driver\": \"blkdebug\", \"inject-error.0.event\": \"read_aio\"}}"},` +
	`{"node-name": "scratch-file", "drv": "file", "ro": false, "file": "/tmp/s.img"}]}`

func TestParseBlockNodes(t *testing.T) {
	nodes, err := parseBlockNodes([]byte(armedReply))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 || nodes[0].NodeName != "scratch-eio" || nodes[0].Driver != "blkdebug" || nodes[2].File != "/tmp/s.img" {
		t.Errorf("got %+v", nodes)
	}
	drive, err := checkArmed(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(drive, `json:{"driver": "raw"`) {
		t.Errorf("drive %q", drive)
	}

	for name, in := range map[string]string{
		"not json":     `{"return": [`,
		"qemu error":   `{"error": {"class": "GenericError", "desc": "no such thing"}}`,
		"no return":    `{"QMP": {}}`,
		"wrong shape":  `{"return": {"node-name": "x"}}`,
		"bad entry":    `{"return": [{"node-name": 7}]}`,
		"null":         `null`,
		"return null":  `{"return": null}`,
		"entry string": `{"return": ["x"]}`,
	} {
		if _, err := parseBlockNodes([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "qemu error" && !strings.Contains(err.Error(), "no such thing") {
			t.Errorf("%s: %v does not carry QEMU's message", name, err)
		}
	}
	if nodes, err := parseBlockNodes([]byte(`{"return": []}`)); err != nil || len(nodes) != 0 {
		t.Errorf("empty list: %v %v", nodes, err)
	}
}

func TestCheckArmed(t *testing.T) {
	cases := map[string][]blockNode{
		"no inject node": {{NodeName: scratchFormat, Driver: "raw", File: `json:{"driver": "blkdebug", "inject-error.0.event": "x"}`}},
		"inject not blkdebug": {{NodeName: scratchInject, Driver: "file"},
			{NodeName: scratchFormat, Driver: "raw", File: `json:{"driver": "blkdebug", "inject-error.0.event": "x"}`}},
		"no format node": {{NodeName: scratchInject, Driver: "blkdebug"}},
		// The reopen did not take: raw still sits on the file node.
		"format on file": {{NodeName: scratchInject, Driver: "blkdebug"}, {NodeName: scratchFormat, Driver: "raw", File: "/tmp/s.img"}},
		// A rules file (Config.ScratchBlkdebug) but no inject-error rules.
		"format on rules only": {{NodeName: scratchInject, Driver: "blkdebug"},
			{NodeName: scratchFormat, Driver: "raw", File: `json:{"driver": "raw", "file": {"driver": "blkdebug", "config": "/r"}}`}},
	}
	for name, nodes := range cases {
		if _, err := checkArmed(nodes); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestInjectIOErrorsBadOp(t *testing.T) {
	v := &VM{exited: make(chan struct{})}
	_, err := v.InjectIOErrors(context.Background(), IORead, "discard")
	if err == nil || !strings.Contains(err.Error(), `"discard"`) {
		t.Errorf("got %v, want an error naming the op", err)
	}
	if _, ok := v.ArmedIOErrors(); ok {
		t.Error("armed after a bad op")
	}
}

func TestIOErrorsString(t *testing.T) {
	e := IOErrors{Ops: []IOErrorOp{IORead, IOWrite}, Errno: 5, Node: scratchInject, Uptime: 21500 * time.Millisecond}
	want := "scratch drive read+write errors (errno 5) via blkdebug node scratch-eio, armed 21.5s after launch"
	if e.String() != want {
		t.Errorf("got %q, want %q", e, want)
	}
}

func TestScratchArgs(t *testing.T) {
	v := &VM{scratch: "/d,x/scratch.img"}
	got := strings.Join(v.scratchArgs(), " ")
	for _, want := range []string{
		"driver=file,node-name=scratch-file,filename=/d,,x/scratch.img",
		"driver=raw,node-name=scratch-fmt,file=scratch-file",
		"drive=scratch-fmt,serial=", "werror=enospc,rerror=report,write-cache=on",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
	v.cfg.ScratchBlkdebug = "/r/rules.conf"
	got = strings.Join(v.scratchArgs(), " ")
	for _, want := range []string{
		"driver=blkdebug,node-name=scratch-rules,image=scratch-file,config=/r/rules.conf",
		"driver=raw,node-name=scratch-fmt,file=scratch-rules",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
}

// TestIntegrationQMPArmWithoutGuest runs QEMU stopped (-S, no guest) with
// the VM's scratch drive arguments and a QMP socket, and arms and clears the
// errors through the same code as a booted VM; a refused command carries
// QEMU's message. It needs no kernel or rootfs: it catches a QEMU that does
// not accept the node chain or the reopen, in seconds.
func TestIntegrationQMPArmWithoutGuest(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "stdbuf")
	t.Run("plain", func(t *testing.T) { armWithoutGuest(t, false) })
	// With a rules file from the start (Config.ScratchBlkdebug) the armed
	// node goes over the rules node.
	t.Run("rules-file", func(t *testing.T) { armWithoutGuest(t, true) })
}

func armWithoutGuest(t *testing.T, rulesFile bool) {
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "mxq-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	v := &VM{scratch: filepath.Join(dir, "scratch.img"), sockDir: sockDir, exited: make(chan struct{}), launched: time.Now(),
		cfg: Config{Logf: t.Logf}}
	if err := createSparse(v.scratch, 64<<20); err != nil {
		t.Fatal(err)
	}
	if rulesFile {
		v.cfg.ScratchBlkdebug = filepath.Join(dir, "rules.conf")
		rules := "[inject-error]\nevent = \"pwritev_rmw_head\"\nerrno = \"28\"\n"
		if err := os.WriteFile(v.cfg.ScratchBlkdebug, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// stdbuf: QEMU's stdout is a pipe, line-buffered so that qemu-io's
	// results arrive as they are printed.
	args := append([]string{"-oL", "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-S", "-machine", "pc", "-accel", "tcg",
		"-qmp", "unix:" + filepath.Join(sockDir, qmpSocket) + ",server=on,wait=off"}, v.scratchArgs()...)
	var stderr testutil.SyncBuffer
	var stdout testutil.SyncBuffer // HMP qemu-io prints its results on QEMU's stdout
	p, err := proc.Start(context.Background(), proc.Cmd{Argv: append([]string{"stdbuf"}, args...), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Kill()
		p.Wait()
		testutil.NoProcessesLeft(t, dir)
	}()
	sock := filepath.Join(sockDir, qmpSocket)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// io runs a qemu-io command on the scratch device's own block backend
	// (the path of the guest's requests) and returns what it printed.
	io := func(c string) string {
		t.Helper()
		before := len(stdout.String())
		r, err := v.qmpRun(ctx, qmpCommand{Execute: "human-monitor-command",
			Arguments: map[string]any{"command-line": "qemu-io -d /machine/peripheral/scratch/virtio-backend \"" + c + `"`}})
		if err != nil {
			t.Fatal(err)
		}
		if reply := string(r[0]); reply != `{"return": ""}` {
			return reply
		}
		// A result is "<op> failed: <error>" or two lines ending "... ops/sec)".
		for i := 0; i < 250; i++ {
			if out := stdout.String()[before:]; strings.Contains(out, "failed: ") || strings.Contains(out, "ops/sec)") {
				t.Logf("qemu-io %s: %s", c, strings.SplitN(out, "\n", 2)[0])
				return out
			}
			time.Sleep(20 * time.Millisecond)
		}
		return stdout.String()[before:]
	}
	if out := io("read 0 4k"); !strings.HasPrefix(out, "read 4096/4096") {
		t.Fatalf("read before arming: %q", out)
	}
	armed, err := v.InjectIOErrors(ctx)
	if err != nil {
		t.Fatalf("%v (qemu stderr: %s)", err, stderr.String())
	}
	for _, c := range []string{"read 0 4k", "write 4096 4k"} {
		if out := io(c); !strings.Contains(out, "failed: Input/output error") {
			t.Errorf("%s after arming: %q, want EIO", c, out)
		}
	}
	t.Logf("armed: %s; drive %s", armed, armed.Drive)
	if rulesFile && !strings.Contains(armed.Drive, `"config"`) {
		t.Errorf("the armed node does not sit on the rules node: %s", armed.Drive)
	}
	if len(armed.Ops) != 2 {
		t.Errorf("default ops %v, want read and write", armed.Ops)
	}
	if err := v.ClearIOErrors(ctx); err != nil {
		t.Fatal(err)
	}
	if out := io("write 4096 4k"); !strings.HasPrefix(out, "wrote 4096/4096") {
		t.Errorf("write after clearing: %q", out)
	}
	// Arming again after clearing works (the node name is free again).
	if _, err := v.InjectIOErrors(ctx, IOWrite); err != nil {
		t.Fatal(err)
	}
	if out := io("read 0 4k"); !strings.HasPrefix(out, "read 4096/4096") {
		t.Errorf("read with only write errors armed: %q", out)
	}
	if out := io("write 0 4k"); !strings.Contains(out, "write failed: Input/output error") {
		t.Errorf("write with write errors armed: %q", out)
	}
	// QEMU's refusal comes back as an *InfraError carrying its message.
	_, err = v.qmpRun(ctx, qmpCommand{Execute: "blockdev-del", Arguments: map[string]any{"node-name": "no-such-node"}})
	var ie *InfraError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no-such-node") || !strings.HasPrefix(err.Error(), "qmp blockdev-del: ") {
		t.Errorf("got %v, want an infra error with QEMU's message", err)
	}
	t.Logf("refused: %v", err)
	// A context that has ended stops the session.
	if err := v.ClearIOErrors(ctx); err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := v.InjectIOErrors(done); !errors.Is(err, context.Canceled) {
		t.Errorf("inject with an ended context: got %v, want context.Canceled", err)
	}
}
