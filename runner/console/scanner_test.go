package console

import (
	"bytes"
	"github.com/matrixctl/matrixctl/api/results"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func scanString(t *testing.T, s string) []Finding {
	t.Helper()
	got, err := Scan(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

const sysrqPanic = `[    5.000000] sysrq: Trigger a crash
[    5.000100] Kernel panic - not syncing: sysrq triggered crash
[    5.000200] CPU: 0 PID: 99 Comm: sh Not tainted 6.1.0-18-amd64 #1  Debian 6.1.76-1
[    5.000300] Call Trace:
[    5.000400]  <TASK>
[    5.000500]  dump_stack_lvl+0x44/0x5c
[    5.000600]  panic+0x118/0x2ed
[    5.000700]  sysrq_handle_crash+0x16/0x20
[    5.000800]  </TASK>
[    5.000900] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---
`

func TestOnFindingFiresWhenTheReportEnds(t *testing.T) {
	var live []Finding
	s := NewScanner(Options{OnFinding: func(f Finding) { live = append(live, f) }})
	lines := strings.SplitAfter(sysrqPanic, "\n")
	for i, l := range lines {
		if _, err := s.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
		if i < 9 && len(live) != 0 {
			t.Fatalf("finding reported before the end marker, after line %d: %v", i+1, live)
		}
	}
	if len(live) != 1 || live[0].Severity != results.SevFatal || live[0].Title != "kernel panic: sysrq triggered crash" {
		t.Fatalf("live findings = %v, want one fatal kernel panic", live)
	}
	if got := s.Close(); !reflect.DeepEqual(got, live) {
		t.Fatalf("Close() = %v, want the live findings %v", got, live)
	}
	if _, err := s.Write([]byte("x\n")); err != ErrClosed {
		t.Fatalf("Write after Close: err = %v, want ErrClosed", err)
	}
}

func TestChunkingDoesNotMatter(t *testing.T) {
	data := []byte(sysrqPanic + "[    6.0] I/O error, dev vdb, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n")
	want, _ := Scan(bytes.NewReader(data))
	for size := 1; size < 40; size++ {
		s := NewScanner(Options{})
		for i := 0; i < len(data); i += size {
			_, _ = s.Write(data[i:min(len(data), i+size)])
		}
		if got := s.Close(); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunks of %d bytes: got %v, want %v", size, got, want)
		}
	}
}

func TestHostileBytes(t *testing.T) {
	in := "\x1b[31m[    1.000000] \x00Kernel panic - not syncing: \x1b]0;title\x07evil\r\n" +
		"[    1.000100] \xff\xfe---[ end Kernel panic - not syncing: evil ]---\r\n"
	got := scanString(t, in)
	if len(got) != 1 || got[0].Title != "kernel panic: evil" {
		t.Fatalf("got %v, want one kernel panic titled %q", got, "kernel panic: evil")
	}
	if strings.ContainsAny(got[0].Excerpt, "\x1b\x00\r\x07") {
		t.Errorf("excerpt keeps control characters: %q", got[0].Excerpt)
	}
	if !utf8.ValidString(got[0].Title) {
		t.Errorf("title is not valid UTF-8: %q", got[0].Title)
	}
}

func TestLongLinesAreCut(t *testing.T) {
	long := strings.Repeat("A", 1<<20)
	in := "[    1.0] EXT4-fs error (device vdb): ext4_lookup:1855: inode #2: comm ls: " + long + "\nnext\n"
	s := NewScanner(Options{MaxLineLen: 4096})
	_, _ = s.Write([]byte(in))
	got := s.Close()
	if len(got) != 1 || got[0].Category != results.CatExt4Error {
		t.Fatalf("got %v, want one ext4 error", got)
	}
	if len(got[0].Title) > maxTitle || len(got[0].Excerpt) > 4*excerptLineLen {
		t.Errorf("title %d bytes, excerpt %d bytes: not bounded", len(got[0].Title), len(got[0].Excerpt))
	}
	if s.Lines() != 2 {
		t.Errorf("Lines() = %d, want 2", s.Lines())
	}
}

func TestTruncatedReportIsCorrupted(t *testing.T) {
	in := "[ 1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n[ 1.1] #PF: supervisor read access in kernel mode\n"
	got := scanString(t, in)
	if len(got) != 1 || !got[0].Corrupted || got[0].Severity != results.SevFatal {
		t.Fatalf("got %v (corrupted=%v), want one corrupted fatal oops", got, len(got) == 1 && got[0].Corrupted)
	}
}

func TestMaxFindings(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 50; i++ {
		b.WriteString("[ 1.0] Kernel panic - not syncing: boom\n[ 1.1] ---[ end Kernel panic - not syncing: boom ]---\n")
		b.WriteString(strings.Repeat("filler\n", consequenceWindow+1))
	}
	s := NewScanner(Options{MaxFindings: 10})
	_, _ = s.Write([]byte(b.String()))
	if got := s.Close(); len(got) != 10 || s.Dropped() != 40 {
		t.Fatalf("kept %d, dropped %d; want 10 kept, 40 dropped", len(got), s.Dropped())
	}
}

func TestRepeatedErrorsAreFolded(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString("[ 2.0] I/O error, dev vdb, sector 123 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 2\n")
	}
	got := scanString(t, b.String())
	if len(got) != 1 || got[0].Count != 1000 || got[0].StartLine != 1 || got[0].EndLine != 1000 {
		t.Fatalf("got %v, want one finding counting 1000 lines 1-1000", got)
	}
}

func TestPanicAfterOopsIsPartOfIt(t *testing.T) {
	in := `[ 1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000
[ 1.1] Oops: 0000 [#1] PREEMPT SMP NOPTI
[ 1.2] RIP: 0010:foo_bar+0x3c/0x3b0 [foo]
[ 1.3] ---[ end trace 0000000000000000 ]---
[ 1.4] Kernel panic - not syncing: Fatal exception
[ 1.5] ---[ end Kernel panic - not syncing: Fatal exception ]---
`
	got := scanString(t, in)
	if len(got) != 1 || got[0].Title != "BUG: kernel NULL pointer dereference in foo_bar" {
		t.Fatalf("got %v, want only the oops", got)
	}
}

func TestUserSpaceFaultsAreNotFindings(t *testing.T) {
	in := `[ 3.0] probe[733]: segfault at 0 ip 000055d4c1a0b2c3 sp 00007ffd1c2e3a40 error 4 in probe[55d4c1a00000+a4000]
[ 3.1] traps: dockerd[612] general protection fault ip:55d4c1a0b2c3 sp:7ffd1c2e3a40 error:0 in dockerd[55d4c0000000+2a4a000]
[ 3.2] traps: probe[734] trap invalid opcode ip:4011d6 sp:7ffc3b2a1e10 error:0 in probe[401000+a4000]
time="2024-02-01T12:00:02Z" level=error msg="Kernel panic - not syncing: in a docker message"
[ 3.3] Call Trace:
[ 3.4]  schedule+0x5a/0xd0
`
	if got := scanString(t, in); len(got) != 0 {
		t.Fatalf("got %v, want no findings", got)
	}
}

func TestNormalize(t *testing.T) {
	n := newNormalizer()
	for in, want := range map[string]string{
		"at 0xffff888004a3b000 in foo+0x12/0x34 [ext4]":    "at ADDR in foo",
		"fs/ext4/inode.c:1234:5 bad":                       "fs/ext4/inode.c bad",
		"Attempted to kill init! exitcode=0x0000000b":      "Attempted to kill init! exitcode=0x0000000b",
		"errno=-5 IO failure on vdb1 and loop12 and dm-3":  "errno=-5 IO failure on vdb and loopN and dm-N",
		"waiting for veth3f2a1b9 to become free, CPU#1 12": "waiting for vethX to become free, CPU#N N",
	} {
		if got := n.normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSilent(t *testing.T) {
	f := Silent(5*time.Minute, 1234)
	if f.Category != results.CatConsoleSilent || f.Severity != results.SevFatal || f.StartLine != 1234 || !strings.Contains(f.Excerpt, "5m0s") {
		t.Fatalf("Silent() = %+v", f)
	}
}

func TestSecondBannerIsAReboot(t *testing.T) {
	banner := "[    0.000000] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP\n"
	if got := scanString(t, banner); len(got) != 0 {
		t.Fatalf("one banner: got %v, want nothing", got)
	}
	got := scanString(t, banner+"[ 9.0] reboot: Restarting system\n"+banner)
	if len(got) != 1 || got[0].Category != results.CatUnexpectedReboot || got[0].StartLine != 3 {
		t.Fatalf("two banners: got %v, want an unexpected reboot at line 3", got)
	}
}

// TestStamplessAndFirmwareLines pins the rules for lines without a kernel
// timestamp in a stamped stream: a WARNING or oops header stands only when a
// stamped body line follows it, and a firmware banner is a restart only once
// the kernel had booted.
func TestStamplessAndFirmwareLines(t *testing.T) {
	const boot = "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting the kernel.\n" +
		"[    0.000000] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP\n" +
		"[    1.000000] Run /init as init process\n"
	warn := "WARNING: CPU: 1 PID: 77 at net/core/dev.c:4562 __netif_receive_skb_core+0x5c1/0xd40\n"
	tests := []struct {
		name, log string
		want      []string // "category title"
	}{
		{"first boot", boot, nil},
		{"echoed warning", boot + warn + "probe: done\n[    2.0] EXT4-fs (vdb): mounted filesystem\n", nil},
		{"echoed warning at the end", boot + warn, nil},
		{"kernel warning without stamp", boot + warn +
			"[    2.000000] Modules linked in: overlay\n[    2.000100] ---[ end trace 0000000000000000 ]---\n",
			[]string{"warning WARNING in __netif_receive_skb_core"}},
		{"restart after boot", boot + "[    9.000000] reboot: Restarting system\n" + boot,
			[]string{"unexpected-reboot unexpected reboot"}},
		{"second banner without firmware", boot + strings.SplitAfter(boot, "\n")[2],
			[]string{"unexpected-reboot unexpected reboot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range scanString(t, tt.log) {
				got = append(got, string(f.Category)+" "+f.Title)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHungTaskNameWithNewline: a comm with a newline splits the hung-task
// header over two console lines.
func TestHungTaskNameWithNewline(t *testing.T) {
	got := scanString(t, "[  100.0] INFO: task probe\n[  100.0] :1177 blocked for more than 120 seconds.\n"+
		"[  100.1]       Not tainted 4.9.0-8-amd64 #1\n[  100.2]  schedule+0x32/0x80\n[  100.3]  ovl_dir_release+0x2e/0x60 [overlay]\n")
	if len(got) != 1 || got[0].Category != results.CatHungTask || got[0].Title != "INFO: task hung in ovl_dir_release" {
		t.Fatalf("got %v, want one hung task in ovl_dir_release", got)
	}
}

// TestEchoedHeaderInsideReport: a user-space line echoing a kernel header in
// the middle of an open report neither cuts it short nor starts a report.
func TestEchoedHeaderInsideReport(t *testing.T) {
	in := "[    1.000000] Linux version 6.1.0 (x@y) #1\n" +
		"[    5.000000] WARNING: possible circular locking dependency detected\n" +
		"[    5.000010] dockerd/812 is trying to acquire lock:\n" +
		"WARNING: CPU: 0 PID: 1 at fake.c:1 fake+0x1/0x2\n" +
		"[    5.000100] stack backtrace:\n" +
		"[    5.000200] Call Trace:\n" +
		"[    5.000300]  ovl_dir_llseek+0x4c/0x90 [overlay]\n" +
		"[    6.000000] EXT4-fs (vdb): mounted filesystem\n"
	got := scanString(t, in)
	if len(got) != 1 || got[0].Corrupted || got[0].Title != "possible deadlock in ovl_dir_llseek" {
		t.Fatalf("got %v, want one whole lockdep report in ovl_dir_llseek", got)
	}
}
