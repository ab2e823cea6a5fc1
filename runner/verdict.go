package runner

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/matrixctl/matrixctl/api/results"
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
	// Preflight holds the provider's warnings about the kernel, found
	// before boot (Preflighter); they decide nothing.
	Preflight []results.Finding
}

// Judgement is the verdict of one run with its reason and evidence.
type Judgement struct {
	Verdict  results.Verdict
	Reason   string
	Findings []results.Finding
}

// classify is the verdict a console finding leads to: its category's class
// in the category table of package results ("" decides nothing). A category
// the table does not know (a scanner newer than the table) is a kernel-crash
// when fatal.
func classify(f results.Finding) results.Verdict {
	if info, ok := f.Category.Info(); ok {
		return info.Class
	}
	if f.Severity == results.SevFatal {
		return results.KernelCrash
	}
	return ""
}

// firstConsole returns the first of the most severe console findings of
// the class: a verdict's reason names "EXT4-fs error ... aborted journal",
// not the warning that came a line before it.
func (e *Evidence) firstConsole(class results.Verdict) (results.Finding, bool) {
	var best results.Finding
	found := false
	for _, f := range e.Console {
		if classify(f) == class && (!found || f.Severity.Rank() > best.Severity.Rank()) {
			best, found = f, true
		}
	}
	return best, found
}

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
		if f, ok := e.firstConsole(results.KernelCrash); ok {
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
		if f, ok := e.firstConsole(results.FSCorruption); ok {
			return "console: " + f.Title, true
		}
		if len(e.Probes.Corrupt) > 0 {
			return fmt.Sprintf("probes read back %d corrupt item(s), first: %s", len(e.Probes.Corrupt), e.Probes.Corrupt[0]), true
		}
		return "", false
	}},
	{results.Hang, func(e *Evidence) (string, bool) {
		if f, ok := e.firstConsole(results.Hang); ok {
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
		if f, ok := e.firstConsole(results.ProbeFailure); ok {
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
	out = append(out, e.Preflight...)
	if e.NoConsole {
		out = append(out, results.Finding{Source: "runner", Category: results.CatNoConsole, Severity: results.SevWarning,
			Title: "this provider has no console: kernel messages were not analysed"})
	}
	for _, l := range e.Probes.Lost {
		out = append(out, results.Finding{Source: "probe", Category: results.CatDataLoss, Severity: results.SevFatal, Title: l})
	}
	for _, c := range e.Probes.Corrupt {
		out = append(out, results.Finding{Source: "probe", Category: results.CatCorruption, Severity: results.SevFatal, Title: c})
	}
	for _, d := range e.Probes.DaemonErrs {
		out = append(out, results.Finding{Source: "probe", Category: results.CatDockerDaemon, Severity: results.SevError, Title: d})
	}
	for _, op := range e.Probes.FailedOps {
		out = append(out, results.Finding{Source: "probe", Category: results.CatFailedOp, Severity: results.SevError, Title: op})
	}
	for _, p := range e.Probes.Probes {
		if !p.OK {
			out = append(out, results.Finding{Source: "probe", Category: results.CatProbeFailed, Severity: results.SevError,
				Title: "probe " + p.Name + " failed" + firstErr(p.Errors)})
		}
	}
	if c := e.Checker; c != nil && !c.Clean {
		out = append(out, results.Finding{Source: "checker", Category: results.CatFSCheckFailed, Severity: results.SevFatal,
			Title: fmt.Sprintf("%s %s: exit %d", c.Tool, strings.Join(c.Args, " "), c.ExitCode), Excerpt: tail(c.Output, 2000)})
	}
	if r := e.Exit.Reason; r != ExitRunning && r != ExitShutdown && r != ExitKilled {
		out = append(out, results.Finding{Source: "runner", Category: results.MachineCategory(string(r)), Severity: results.SevError,
			Title: "machine stopped: " + string(r) + detail(e.Exit.Detail)})
	}
	if e.DockerErr != nil {
		out = append(out, results.Finding{Source: "runner", Category: results.CatDockerUnreachable, Severity: results.SevError,
			Title: summaryLine(e.DockerErr.Error()), Excerpt: tail(e.DockerErr.Error(), 4000)})
	}
	if e.TimedOut {
		out = append(out, results.Finding{Source: "runner", Category: results.CatTimeout, Severity: results.SevError, Title: "cell timeout expired in phase " + e.Phase})
	}
	if e.ShutdownErr != nil {
		out = append(out, results.Finding{Source: "runner", Category: results.CatShutdownFailed, Severity: results.SevError, Title: e.ShutdownErr.Error()})
	}
	var u *UnsupportedError
	switch {
	case errors.As(e.Err, &u):
		f := results.Finding{Source: "runner", Category: results.CatUnsupported, Severity: results.SevWarning, Title: summaryLine(u.Reason)}
		if f.Title != u.Reason {
			f.Excerpt = tail(u.Reason, 4000) // a kernel preflight's reason names several missing features with their sources
		}
		out = append(out, f)
	case e.Err != nil:
		out = append(out, results.Finding{Source: "runner", Category: results.CatHarnessError, Severity: results.SevError,
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
