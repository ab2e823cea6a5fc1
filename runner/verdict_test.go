package runner

import (
	"errors"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

func TestJudge(t *testing.T) {
	panicF := results.Finding{Source: "console", Category: "kernel-panic", Severity: "fatal", Title: "Kernel panic - not syncing: sysrq triggered crash"}
	hungF := results.Finding{Source: "console", Category: "hung-task", Severity: "error", Title: "INFO: task dd blocked for more than 2 seconds"}
	ext4F := results.Finding{Source: "console", Category: "ext4-error", Severity: "error", Title: "EXT4-fs error (device vdb): bad inode"}
	ioF := results.Finding{Source: "console", Category: "io-error", Severity: "error", Title: "I/O error, dev vdb, sector 2048"}
	oomF := results.Finding{Source: "console", Category: "oom-kill", Severity: "warning", Title: "Out of memory: Killed process 42 (probe)"}
	kconfigW := results.Finding{Source: "runner", Category: results.CatKernelConfig, Severity: results.SevWarning, Title: "kernel 6.1.0-28-amd64: seccomp profiles … needs CONFIG_SECCOMP_FILTER"}
	unknownWarning := results.Finding{Source: "console", Category: "something-new", Severity: "warning", Title: "new odd thing"}
	unknownFatal := results.Finding{Source: "console", Category: "something-new", Severity: "fatal", Title: "new fatal thing"}
	dirty := &results.Checker{Tool: "e2fsck", Args: []string{"-fn", "x.img"}, ExitCode: 4, Output: "Inode 12 has bad mode"}
	clean := &results.Checker{Tool: "e2fsck", Args: []string{"-fn", "x.img"}, Clean: true}
	lost := ProbeReport{Lost: []string{"/data/f1 offset 4096: expected gen 3 crc 1a, found zeros"}}
	failedProbe := ProbeReport{Probes: []results.Probe{{Name: "net", OK: false, Errors: []string{"connection reset"}}}}
	failedOp := ProbeReport{FailedOps: []string{"io: fsync /data/f3: input/output error"}, Probes: []results.Probe{{Name: "io"}}}
	okProbes := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}, {Name: "net", OK: true}}}

	tests := []struct {
		name   string
		ev     Evidence
		want   results.Verdict
		reason string // substring
	}{
		{"pass", Evidence{Probes: okProbes, Checker: clean, Exit: Exit{Reason: ExitShutdown}}, results.Pass, "passed"},
		{"kernel-config warnings decide nothing", Evidence{Probes: okProbes, Checker: clean, Exit: Exit{Reason: ExitShutdown}, Preflight: []results.Finding{kconfigW}}, results.Pass, "passed"},
		{"a warning of a category the table does not know decides nothing", Evidence{Console: []results.Finding{unknownWarning}, Probes: okProbes, Checker: clean, Exit: Exit{Reason: ExitShutdown}}, results.Pass, "passed"},
		{"unsupported beats everything", Evidence{Err: &UnsupportedError{Reason: "kernel has no aufs module"}, Console: []results.Finding{panicF}}, results.Unsupported, "aufs"},
		{"panic on console", Evidence{Console: []results.Finding{panicF}, Probes: okProbes}, results.KernelCrash, "sysrq"},
		{"vm exited by itself", Evidence{Exit: Exit{Reason: ExitCrashed, Detail: "qemu exited 0 during probes"}}, results.KernelCrash, "by itself"},
		{"unknown fatal console finding is a crash", Evidence{Console: []results.Finding{unknownFatal}}, results.KernelCrash, "new fatal"},
		{"crash beats data loss and fs", Evidence{Console: []results.Finding{ext4F, panicF}, Probes: lost, Checker: dirty}, results.KernelCrash, "panic"},
		{"data loss", Evidence{Probes: lost, Checker: clean}, results.DataLoss, "offset 4096"},
		{"data loss beats fs corruption", Evidence{Probes: lost, Checker: dirty}, results.DataLoss, "1 promised"},
		{"checker dirty", Evidence{Probes: okProbes, Checker: dirty}, results.FSCorruption, "e2fsck"},
		{"fs error on console", Evidence{Console: []results.Finding{ext4F}, Probes: okProbes, Checker: clean}, results.FSCorruption, "EXT4-fs error"},
		{"io error with fs complaint", Evidence{Console: []results.Finding{ioF, ext4F}, Probes: failedOp}, results.FSCorruption, "EXT4"},
		{"io error with checker dirty", Evidence{Console: []results.Finding{ioF}, Probes: failedOp, Checker: dirty}, results.FSCorruption, "e2fsck"},
		{"io error alone names the op", Evidence{Console: []results.Finding{ioF}, Probes: failedOp, Checker: clean}, results.ProbeFailure, "fsync /data/f3"},
		{"hung task with vm alive", Evidence{Console: []results.Finding{hungF}, Probes: okProbes}, results.Hang, "blocked"},
		{"fs beats hang", Evidence{Console: []results.Finding{hungF, ext4F}}, results.FSCorruption, "EXT4"},
		{"silent console watchdog", Evidence{Exit: Exit{Reason: ExitHang, Detail: "no console output for 60s"}}, results.Hang, "no console output"},
		{"timeout", Evidence{TimedOut: true, Phase: PhaseProbes}, results.Hang, "probes"},
		{"shutdown never completed", Evidence{Probes: okProbes, ShutdownErr: errors.New("context deadline exceeded")}, results.Hang, "shutdown"},
		{"hang beats docker failure", Evidence{Exit: Exit{Reason: ExitHang}, DockerErr: errors.New("ping: EOF")}, results.Hang, "watchdog"},
		{"dockerd died", Evidence{Exit: Exit{Reason: ExitDockerDied, Detail: "dockerd exit status 2"}, Probes: failedProbe}, results.DockerFailure, "exit status 2"},
		{"docker never ready", Evidence{DockerErr: errors.New("no answer after 120s"), Phase: PhaseDocker}, results.DockerFailure, "no answer"},
		{"docker failure beats probe failure", Evidence{DockerErr: errors.New("ping: connection refused"), Probes: failedProbe}, results.DockerFailure, "refused"},
		{"probe read back corrupt data", Evidence{Probes: ProbeReport{Corrupt: []string{"/data/f9 at 0: crc mismatch"}}, Checker: clean}, results.FSCorruption, "f9"},
		{"daemon failed the probes", Evidence{Probes: ProbeReport{DaemonErrs: []string{"churn: container create: 500"}}}, results.DockerFailure, "500"},
		{"probe failed", Evidence{Probes: failedProbe, Checker: clean}, results.ProbeFailure, "connection reset"},
		{"oom alone decides nothing", Evidence{Console: []results.Finding{oomF}, Probes: okProbes}, results.Pass, ""},
		{"oom with failing probe", Evidence{Console: []results.Finding{oomF}, Probes: failedProbe}, results.ProbeFailure, "net"},
		{"infra", Evidence{Err: Infra("start qemu", errors.New("exec: qemu-system-x86_64: not found")), Phase: PhaseBoot}, results.InfraError, "qemu-system"},
		{"infra exit", Evidence{Exit: Exit{Reason: ExitInfra, Detail: "qemu: could not open disk"}}, results.InfraError, "could not open"},
		{"cell evidence beats infra", Evidence{Err: Infra("probes", errors.New("lost connection")), Console: []results.Finding{panicF}}, results.KernelCrash, "panic"},
		{"multi-line error gives a one-line reason", Evidence{DockerErr: errors.New("dockerd exited before it answered: time=1 msg=a\ntime=2 msg=b")}, results.DockerFailure, "msg=a …"},
		{"docker failure beats infra", Evidence{Err: Infra("probes", errors.New("x")), DockerErr: errors.New("ping: EOF")}, results.DockerFailure, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := Judge(tt.ev)
			if j.Verdict != tt.want || !strings.Contains(j.Reason, tt.reason) {
				t.Fatalf("Judge = %s (%q), want %s with reason containing %q", j.Verdict, j.Reason, tt.want, tt.reason)
			}
			if strings.Contains(j.Reason, "\n") || len(j.Reason) > maxReason+len("…") {
				t.Errorf("reason is not one bounded line: %q", j.Reason)
			}
			if j.Verdict != results.Pass && len(j.Findings) == 0 {
				t.Errorf("verdict %s carries no findings", j.Verdict)
			}
		})
	}
}

// TestPrecedenceMatchesSeverity keeps the rule order consistent with the
// shared severity order in results.VerdictOrder.
// TestLongUnsupportedReasonIsKept: the verdict's reason is one bounded
// line, but the unsupported finding keeps all of it (a kernel preflight
// names every missing feature with its source).
func TestLongUnsupportedReasonIsKept(t *testing.T) {
	reason := "kernel 9.9-custom: " + strings.Repeat("namespaces needs CONFIG_NET_NS: CONFIG_NET_NS is not set [moby contrib/check-config.sh]; ", 5)
	j := Judge(Evidence{Err: &UnsupportedError{Reason: reason}})
	if j.Verdict != results.Unsupported || len(j.Reason) > maxReason+len("…") {
		t.Fatalf("%s %q", j.Verdict, j.Reason)
	}
	if len(j.Findings) != 1 || j.Findings[0].Excerpt != reason {
		t.Errorf("findings %+v: want the unsupported finding with the whole reason as its excerpt", j.Findings)
	}
	if j := Judge(Evidence{Err: &UnsupportedError{Reason: "short"}}); j.Findings[0].Excerpt != "" {
		t.Errorf("short reason: excerpt %q, want none", j.Findings[0].Excerpt)
	}
}

func TestPrecedenceMatchesSeverity(t *testing.T) {
	rank := map[results.Verdict]int{}
	for i, v := range results.VerdictOrder {
		rank[v] = i
	}
	last := -1
	for _, r := range precedence[1:] { // unsupported is decided first: the cell never ran
		if r.verdict == results.InfraError {
			continue // infra-error only when no evidence about the cell exists
		}
		if rank[r.verdict] < last {
			t.Errorf("rule %s is ordered before a less severe verdict", r.verdict)
		}
		last = rank[r.verdict]
	}
}

func TestNoConsoleIsRecorded(t *testing.T) {
	j := Judge(Evidence{NoConsole: true, Probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}})
	if j.Verdict != results.Pass || len(j.Findings) != 1 || j.Findings[0].Category != "no-console" {
		t.Fatalf("got %+v", j)
	}
}

// TestRealConsoleScannerDecides feeds real console text through the real
// scanner and checks the verdict its findings decide.
func TestRealConsoleScannerDecides(t *testing.T) {
	newScanner := ConsoleAnalyzer()
	cases := []struct {
		log  string
		want results.Verdict
	}{
		{"[   12.345678] sysrq: Trigger a crash\n[   12.345700] Kernel panic - not syncing: sysrq triggered crash\n[   12.345800] CPU: 0 PID: 1 Comm: sh Not tainted 6.1.0-28-amd64 #1\n[   12.346000] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n", results.KernelCrash},
		{"[   30.000000] INFO: task dd:412 blocked for more than 2 seconds.\n[   30.000100]       Not tainted 6.1.0-28-amd64 #1\n[   30.000200] \"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n[   30.000300] task:dd              state:D stack:0     pid:412   ppid:1      flags:0x00004000\n[   30.000400] Call Trace:\n[   30.000500]  <TASK>\n[   30.000600]  __schedule+0x34d/0x9e0\n[   30.000700]  </TASK>\n", results.Hang},
		{"[    5.000000] EXT4-fs error (device vdb): ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 12\n", results.FSCorruption},
	}
	for _, c := range cases {
		s := newScanner(nil)
		s.Write([]byte(c.log))
		fs := s.Close()
		if got := Judge(Evidence{Console: fs, Probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}}).Verdict; got != c.want {
			t.Errorf("verdict %s, want %s; findings %+v", got, c.want, fs)
		}
	}
}

// TestReasonNamesTheMostSevereFinding: the reason quotes the first of the
// most severe findings of the deciding class, not an earlier warning.
func TestReasonNamesTheMostSevereFinding(t *testing.T) {
	j := Judge(Evidence{Console: []results.Finding{
		{Source: "console", Category: "io-error", Severity: "error", Title: "I/O error on dev vdc (WRITE)"},
		{Source: "console", Category: "ext4-error", Severity: "warning", Title: "EXT4-fs warning in ext4_end_bio: I/O error 10"},
		{Source: "console", Category: "jbd2-abort", Severity: "error", Title: "JBD2: aborting journal"},
		{Source: "console", Category: "ext4-error", Severity: "error", Title: "EXT4-fs error: Detected aborted journal"},
	}})
	if j.Verdict != results.FSCorruption || j.Reason != "console: JBD2: aborting journal" {
		t.Errorf("got %s %q, want fs-corruption naming the journal abort", j.Verdict, j.Reason)
	}
}

// TestJudgeFollowsCategoryTable: a lone console finding of each category
// gives the verdict its row in results' category table names (pass for a
// category that decides nothing alone).
func TestJudgeFollowsCategoryTable(t *testing.T) {
	okProbes := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	for _, ci := range results.ConsoleCategories() {
		want := ci.Class
		if want == "" {
			want = results.Pass
		}
		f := results.Finding{Source: "console", Category: ci.Category, Severity: results.SevError, Title: "t"}
		if got := Judge(Evidence{Console: []results.Finding{f}, Probes: okProbes}).Verdict; got != want {
			t.Errorf("category %s: verdict %s, want %s", ci.Category, got, want)
		}
	}
}
