package qemu

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
)

func TestReadLineDropsLongLines(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 300) + "\nnext\nlast"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, err := readLine(r, 100)
		got = append(got, strings.TrimSpace(string(line)))
		if err != nil {
			break
		}
	}
	want := []string{"short", "", "next", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestConfigDefaultsErrors(t *testing.T) {
	cases := map[string]Config{
		"no kernel":   {Dir: t.TempDir()},
		"no dir":      {Kernel: &images.Kernel{}, Rootfs: &images.Rootfs{}},
		"missing img": {Dir: t.TempDir(), Kernel: &images.Kernel{Vmlinuz: "/nonexistent"}, Rootfs: &images.Rootfs{}},
	}
	for name, c := range cases {
		if err := c.defaults(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestQemuEscape(t *testing.T) {
	if got := qemuEscape("/a,b/c"); got != "/a,,b/c" {
		t.Errorf("got %q", got)
	}
}

func TestGateWriter(t *testing.T) {
	var g gateWriter
	g.Write([]byte("early "))
	var sb strings.Builder
	g.open(&sb)
	g.Write([]byte("late"))
	if sb.String() != "early late" {
		t.Errorf("got %q", sb.String())
	}
}

// startedVM is a VM around a real child process (sleep) with no QEMU, no
// console and no agent: enough for kill, exit and silence bookkeeping.
func startedVM(t *testing.T, quiet time.Duration) *VM {
	t.Helper()
	p, err := proc.Start(context.Background(), proc.Cmd{Argv: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	v := &VM{proc: p, exited: make(chan struct{}), consoleDone: make(chan struct{}), changed: make(chan struct{})}
	v.launched = time.Now().Add(-2 * quiet)
	v.progress.Store(time.Now().Add(-quiet).UnixNano())
	go v.waitExit()
	return v
}

// TestKillKeepsTheSilenceThatDecidedIt: after the watchdog kills a frozen
// VM, the agent reader can still hand over a partial line at EOF (seen in
// CI: "silence 0s" after a 4 s watchdog). The exit reports the silence the
// kill was decided on, not the time since that late read.
func TestKillKeepsTheSilenceThatDecidedIt(t *testing.T) {
	v := startedVM(t, 5*time.Second)
	v.killWith(ExitWatchdog)
	v.touch() // the partial agent line read at EOF
	close(v.consoleDone)
	exit := v.Wait()
	if exit.Reason != ExitWatchdog || exit.Status != "signal: killed" {
		t.Fatalf("exit %+v, want a watchdog kill", exit)
	}
	if exit.Silence < 5*time.Second || exit.Silence > 10*time.Second {
		t.Errorf("silence %s, want the 5s the watchdog saw", exit.Silence)
	}
}

// TestSelfExitSilence: a VM that ends by itself reports the silence up to
// its end.
func TestSelfExitSilence(t *testing.T) {
	v := startedVM(t, 3*time.Second)
	v.proc.Kill() // not through killWith: no reason
	close(v.consoleDone)
	exit := v.Wait()
	if exit.Reason != ExitSelf {
		t.Fatalf("exit %+v, want %s", exit, ExitSelf)
	}
	if exit.Silence < 3*time.Second {
		t.Errorf("silence %s, want at least 3s", exit.Silence)
	}
}
