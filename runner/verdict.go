package runner

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/matrixctl/matrixctl/results"
)

// Evidence is everything a run observed; Judge turns it into a verdict.
type Evidence struct {
	// Err is the harness error that ended the run early, if any: an
	// *UnsupportedError, an *InfraError, or any other error of the harness.
	Err error
	// Phase is the phase Err or TimedOut happened in.
	Phase string
	// DockerErr: dockerd never answered, or stopped answering.
	DockerErr error
	// Console holds the console scanner's findings (nil for NoConsole).
	Console   []results.Finding
	NoConsole bool
	// Probes is what the probes reported.
	Probes ProbeReport
	// Checker is the host-side checker's result (nil: not run).
	Checker *results.Checker
	// Exit is why the machine stopped.
	Exit Exit
	// TimedOut: the per-cell timeout expired.
	TimedOut bool
	// ShutdownErr: the machine did not stop cleanly when asked.
	ShutdownErr error
	// Faults records the faults injected on purpose (fault-injection
	// cells); they decide nothing, the evidence they cause does.
	Faults []results.Finding
}

// Judgement is the verdict of one run with its reason and evidence.
type Judgement struct {
	Verdict  results.Verdict
	Reason   string
	Findings []results.Finding
}

// consoleClass is what a console finding says about the cell.
type consoleClass int

const (
	classNone  consoleClass = iota // recorded, decides nothing alone
	classCrash                     // the kernel died
	classHang                      // a task or CPU made no progress
	classFS                        // a filesystem reported damage
	classIO                        // a block device returned an error
)

// consoleCategories classifies the console scanner's finding categories.
// Categories not listed are classified by consolePrefixes, then by severity
// (fatal → crash).
var consoleCategories = map[string]consoleClass{
	"kernel-panic": classCrash, "panic": classCrash, "oops": classCrash, "bug": classCrash,
	"general-protection-fault": classCrash, "gpf": classCrash, "kasan": classCrash,
	"unexpected-reboot": classCrash, "double-fault": classCrash, "machine-check": classCrash,
	"hung-task": classHang, "soft-lockup": classHang, "hard-lockup": classHang,
	"rcu-stall": classHang, "watchdog": classHang, "console-silent": classHang, "workqueue-lockup": classHang,
	"io-error": classIO, "blk-error": classIO, "block-io-error": classIO, "buffer-io-error": classIO,
	"scsi-error": classIO, "virtio-blk-error": classIO,
	"fs-error": classFS, "fs-corruption": classFS, "overlayfs-error": classFS, "jbd2-abort": classFS,
	"oom-kill": classNone, "warning": classNone, "lockdep": classNone, "sleep-in-atomic": classNone,
	"page-alloc-failure": classNone, "netdev-unregister": classNone, "kmemleak": classNone,
}

// consolePrefixes classify families of categories (ext4-error, xfs-corruption, ...).
var consolePrefixes = []struct {
	prefix string
	class  consoleClass
}{
	{"ext4-", classFS}, {"ext3-", classFS}, {"ext2-", classFS}, {"xfs-", classFS},
	{"btrfs-", classFS}, {"jbd2-", classFS}, {"overlay-", classFS}, {"aufs-", classFS},
	{"dm-thin", classFS}, {"io-", classIO}, {"blk-", classIO},
	{"panic", classCrash}, {"oops", classCrash}, {"bug-", classCrash},
	{"hung-", classHang}, {"lockup", classHang}, {"soft-lockup", classHang}, {"rcu-", classHang},
}

func classify(f results.Finding) consoleClass {
	cat := strings.ToLower(f.Category)
	if c, ok := consoleCategories[cat]; ok {
		return c
	}
	for _, p := range consolePrefixes {
		if strings.HasPrefix(cat, p.prefix) {
			return p.class
		}
	}
	if f.Severity == "fatal" {
		return classCrash
	}
	return classNone
}

// firstConsole returns the first of the most severe console findings of
// class c: a verdict's reason names "EXT4-fs error ... aborted journal",
// not the warning that came a line before it.
func (e *Evidence) firstConsole(c consoleClass) (results.Finding, bool) {
	var best results.Finding
	found := false
	for _, f := range e.Console {
		if classify(f) == c && (!found || severityRank[f.Severity] > severityRank[best.Severity]) {
			best, found = f, true
		}
	}
	return best, found
}

// severityRank orders finding severities.
var severityRank = map[string]int{"info": 1, "warning": 2, "error": 3, "fatal": 4}

// rule decides one verdict if its evidence is present.
type rule struct {
	verdict results.Verdict
	match   func(e *Evidence) (reason string, ok bool)
}

// Precedence is the order in which evidence decides the verdict; the first
// rule that matches wins:
//
//	unsupported     the cell cannot run here (never booted)
//	kernel-crash    a panic/oops/BUG on the console, or the VM exited by itself
//	data-loss       the probes found promised (written or fsynced) data wrong or missing
//	fs-corruption   the host checker found the scratch fs dirty, or the fs reported damage
//	hang            hung task / lockup / RCU stall with the VM alive, a silent
//	                console (watchdog), a shutdown that never completed, or the cell timeout
//	docker-failure  dockerd never answered or stopped answering
//	probe-failure   a probe failed; I/O errors the fs did not complain about land
//	                here, naming the failing operation
//	infra-error     the harness or host failed and no evidence about the cell was seen
//	pass
//
// Evidence about the cell beats a harness failure: a kernel panic seen
// while the harness also failed is a kernel-crash, not an infra-error.
var precedence = []rule{
	{results.Unsupported, func(e *Evidence) (string, bool) {
		var u *UnsupportedError
		if errors.As(e.Err, &u) {
			return u.Reason, true
		}
		return "", false
	}},
	{results.KernelCrash, func(e *Evidence) (string, bool) {
		if f, ok := e.firstConsole(classCrash); ok {
			return "console: " + f.Title, true
		}
		if e.Exit.Reason == ExitCrashed {
			return "the machine stopped by itself: " + orDefault(e.Exit.Detail, "no detail"), true
		}
		return "", false
	}},
	{results.DataLoss, func(e *Evidence) (string, bool) {
		if len(e.Probes.Lost) > 0 {
			return fmt.Sprintf("%d promised block(s) lost or wrong, first: %s", len(e.Probes.Lost), e.Probes.Lost[0]), true
		}
		return "", false
	}},
	{results.FSCorruption, func(e *Evidence) (string, bool) {
		if e.Checker != nil && !e.Checker.Clean {
			return fmt.Sprintf("%s found errors on the scratch %s (exit %d)", e.Checker.Tool, "disk", e.Checker.ExitCode), true
		}
		if f, ok := e.firstConsole(classFS); ok {
			return "console: " + f.Title, true
		}
		if len(e.Probes.Corrupt) > 0 {
			return fmt.Sprintf("probes read back %d corrupt item(s), first: %s", len(e.Probes.Corrupt), e.Probes.Corrupt[0]), true
		}
		return "", false
	}},
	{results.Hang, func(e *Evidence) (string, bool) {
		if f, ok := e.firstConsole(classHang); ok {
			return "console: " + f.Title, true
		}
		if e.Exit.Reason == ExitHang {
			return "watchdog: " + orDefault(e.Exit.Detail, "no progress"), true
		}
		if e.TimedOut {
			return "cell timeout expired in phase " + orDefault(e.Phase, "?"), true
		}
		if e.ShutdownErr != nil {
			return "clean shutdown did not complete: " + e.ShutdownErr.Error(), true
		}
		return "", false
	}},
	{results.DockerFailure, func(e *Evidence) (string, bool) {
		if e.Exit.Reason == ExitDockerDied {
			return "dockerd exited: " + orDefault(e.Exit.Detail, "no detail"), true
		}
		if e.DockerErr != nil {
			return "dockerd: " + e.DockerErr.Error(), true
		}
		if len(e.Probes.DaemonErrs) > 0 {
			return "dockerd failed the probes: " + e.Probes.DaemonErrs[0], true
		}
		return "", false
	}},
	{results.ProbeFailure, func(e *Evidence) (string, bool) {
		if f, ok := e.firstConsole(classIO); ok {
			if len(e.Probes.FailedOps) > 0 {
				return "I/O error (" + f.Title + ") failed " + e.Probes.FailedOps[0], true
			}
			return "I/O error on the console: " + f.Title, true
		}
		if len(e.Probes.FailedOps) > 0 {
			return "probe operation failed: " + e.Probes.FailedOps[0], true
		}
		for _, p := range e.Probes.Probes {
			if !p.OK {
				return "probe " + p.Name + " failed" + firstErr(p.Errors), true
			}
		}
		return "", false
	}},
	{results.InfraError, func(e *Evidence) (string, bool) {
		if e.Err != nil {
			return "in " + orDefault(e.Phase, "?") + ": " + e.Err.Error(), true
		}
		if e.Exit.Reason == ExitInfra {
			return "machine: " + orDefault(e.Exit.Detail, "host-side failure"), true
		}
		return "", false
	}},
}

// Judge turns evidence into one verdict, its reason and its findings (the
// console findings plus one finding per other piece of evidence). It is a
// pure function.
func Judge(e Evidence) Judgement {
	j := Judgement{Verdict: results.Pass, Reason: "every probe passed"}
	for _, r := range precedence {
		if reason, ok := r.match(&e); ok {
			j.Verdict, j.Reason = r.verdict, summaryLine(reason)
			break
		}
	}
	j.Findings = evidenceFindings(&e)
	return j
}

func evidenceFindings(e *Evidence) []results.Finding {
	out := append([]results.Finding{}, e.Console...)
	out = append(out, e.Faults...)
	if e.NoConsole {
		out = append(out, results.Finding{Source: "runner", Category: "no-console", Severity: "warning",
			Title: "this provider has no console: kernel messages were not analysed"})
	}
	for _, l := range e.Probes.Lost {
		out = append(out, results.Finding{Source: "probe", Category: "data-loss", Severity: "fatal", Title: l})
	}
	for _, c := range e.Probes.Corrupt {
		out = append(out, results.Finding{Source: "probe", Category: "corruption", Severity: "fatal", Title: c})
	}
	for _, d := range e.Probes.DaemonErrs {
		out = append(out, results.Finding{Source: "probe", Category: "docker-daemon", Severity: "error", Title: d})
	}
	for _, op := range e.Probes.FailedOps {
		out = append(out, results.Finding{Source: "probe", Category: "failed-op", Severity: "error", Title: op})
	}
	for _, p := range e.Probes.Probes {
		if !p.OK {
			out = append(out, results.Finding{Source: "probe", Category: "probe-failed", Severity: "error",
				Title: "probe " + p.Name + " failed" + firstErr(p.Errors)})
		}
	}
	if c := e.Checker; c != nil && !c.Clean {
		out = append(out, results.Finding{Source: "checker", Category: "fs-check-failed", Severity: "fatal",
			Title: fmt.Sprintf("%s %s: exit %d", c.Tool, strings.Join(c.Args, " "), c.ExitCode), Excerpt: tail(c.Output, 2000)})
	}
	if r := e.Exit.Reason; r != ExitRunning && r != ExitShutdown && r != ExitKilled {
		out = append(out, results.Finding{Source: "runner", Category: "machine-" + string(r), Severity: "error",
			Title: "machine stopped: " + string(r) + detail(e.Exit.Detail)})
	}
	if e.DockerErr != nil {
		out = append(out, results.Finding{Source: "runner", Category: "docker-unreachable", Severity: "error",
			Title: summaryLine(e.DockerErr.Error()), Excerpt: tail(e.DockerErr.Error(), 4000)})
	}
	if e.TimedOut {
		out = append(out, results.Finding{Source: "runner", Category: "timeout", Severity: "error", Title: "cell timeout expired in phase " + e.Phase})
	}
	if e.ShutdownErr != nil {
		out = append(out, results.Finding{Source: "runner", Category: "shutdown-failed", Severity: "error", Title: e.ShutdownErr.Error()})
	}
	var u *UnsupportedError
	switch {
	case errors.As(e.Err, &u):
		out = append(out, results.Finding{Source: "runner", Category: "unsupported", Severity: "warning",
			Title: summaryLine(u.Reason)})
	case e.Err != nil:
		out = append(out, results.Finding{Source: "runner", Category: "harness-error", Severity: "error",
			Title: summaryLine("in " + orDefault(e.Phase, "?") + ": " + e.Err.Error()), Excerpt: tail(e.Err.Error(), 4000)})
	}
	return out
}

// maxReason bounds a verdict's one-line reason and finding titles; the full
// text stays in the finding's excerpt.
const maxReason = 300

// summaryLine keeps the first line of s, bounded: subprocess output pasted
// into an error (a dockerd log) must not become a multi-line reason.
func summaryLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " …"
	}
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func detail(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func firstErr(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return ": " + errs[0]
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
