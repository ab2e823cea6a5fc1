package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/probes/record"
	"github.com/matrixctl/matrixctl/results"
)

// The crash-consistency check (a cell's crash_check, or its power-cut
// fault) runs after the probes, in place of the clean shutdown:
//
//	power-cut  the IO probe starts again, keeping its container and volume;
//	           crashCut after its container started, the machine's power is
//	           cut (SIGKILL of QEMU: the guest's page cache is lost, what it
//	           flushed is on the disk image)
//	reboot     a new machine boots on the same scratch disk (its filesystem
//	           is mounted, the journal replayed) up to dockerd
//	verify     the kept IO container runs again and checks every block its
//	           fsync-promise journal promised
//
// The rebooted machine is then shut down cleanly and its scratch disk goes
// to the host checker like any other. A promised block that is missing or
// wrong is data-loss; writes the probe had not yet promised may be gone and
// are reported (how much was written, how much promised), not failed.

// crashCut is how long the IO probe writes at least before the power is
// cut (Options.PowerCutAfter); the cut waits for its first progress record
// (a round of writes, so something was promised) up to crashCutMax, polling
// every crashPoll.
const (
	crashCut    = 5 * time.Second
	crashCutMax = 60 * time.Second
	crashPoll   = 250 * time.Millisecond
)

// crashDir is the run subdirectory of the machine booted after the cut;
// its artifacts are recorded under names prefixed with crashKeyPrefix.
const (
	crashDir       = "after-power-cut"
	crashKeyPrefix = "after-power-cut-"
)

// powerCutFault is the fault name that asks for the crash-consistency check.
const powerCutFault = "power-cut"

// wantsCrashCheck reports whether a cell asks for the crash-consistency
// check, or for the flip-data fault, which runs the same way with a clean
// shutdown and a corrupted promised block in place of the power cut.
func wantsCrashCheck(s matrix.Settings) bool {
	return s.CrashCheck || slices.Contains(s.Faults, powerCutFault) || flipsData(s)
}

func flipsData(s matrix.Settings) bool { return slices.Contains(s.Faults, flipDataFault) }

// crashAttempt is what the crash check shares with its attempt.
type crashAttempt struct {
	jb      job
	try     int
	dir     string // the run directory
	rel     string // the run directory relative to the results directory
	host    string // the first machine's DOCKER_HOST
	ownsLog bool
	clock   *phaseClock
	ev      *Evidence
	run     *results.Run
	// closeConsole closes the first machine's console into ev.Console.
	closeConsole  func()
	isInterrupted func() bool
	timedOut      func() bool
}

// crashOutcome is how the crash check ended.
type crashOutcome struct {
	// next is the machine booted after the cut, running; the attempt shuts
	// it down and checks its scratch disk. nil: the check ended earlier and
	// its evidence is in the attempt's Evidence.
	next Machine
	// console is next's console sink.
	console *consoleSink
	// interrupted: Stop or the hard stop came; nothing is recorded.
	interrupted bool
	// orphanScratch is a scratch image no machine owns any more (the
	// reboot failed after taking it over); the attempt removes it.
	orphanScratch string
}

// crashCheck cuts m's power while the IO probe writes and boots the cell
// again on the same scratch disk; see the comment at the top of this file.
// ctx is the hard stop, cellCtx the cell's deadline.
func (r *run) crashCheck(ctx, cellCtx context.Context, a crashAttempt, m Machine) crashOutcome {
	ev := a.ev

	if flipsData(a.jb.cell.Settings) {
		return r.flipAndReboot(ctx, cellCtx, a, m)
	}

	// power-cut
	i := a.clock.start(PhasePowerCut)
	runID := fmt.Sprintf("cut%d%06x", a.try, time.Now().UnixNano()&0xffffff)
	cutRecords := filepath.Join(a.dir, "probes-power-cut.jsonl")
	after := r.opts.PowerCutAfter
	if after == 0 {
		after = crashCut
	}
	cut, cutErr := r.cutPower(cellCtx, m, after, ProbeRequest{
		DockerHost: a.host, Probes: []string{"io"}, Duration: after + 2*time.Minute,
		RecordsPath: cutRecords, KeepIO: true, RunID: runID,
	})
	a.clock.end(i, cutErr)
	a.run.Artifacts = addArtifact(a.run.Artifacts, "probes-power-cut", filepath.Join(a.rel, "probes-power-cut.jsonl"))
	r.retire(a, m) // killed; its scratch disk stays for the reboot
	switch {
	case a.isInterrupted():
		return crashOutcome{interrupted: true}
	case a.timedOut():
		ev.TimedOut, ev.Phase = true, PhasePowerCut
		return crashOutcome{orphanScratch: m.Scratch().Path}
	case cutErr != nil:
		// The probe ended before the cut: its report is the evidence.
		ev.Probes = mergeReports(ev.Probes, cut.report)
		if cut.err != nil && IsInfra(cut.err) && ev.Err == nil {
			ev.Err, ev.Phase = cut.err, PhasePowerCut
		}
		ev.Faults = append(ev.Faults, results.Finding{Source: "runner", Category: "crash-check", Severity: "warning",
			Title: "crash check not done: " + cutErr.Error()})
		return crashOutcome{orphanScratch: m.Scratch().Path}
	}
	before := ioProgress(cutRecords)
	return r.rebootAndVerify(cellCtx, a, m, runID, func(rep ProbeReport) string { return crashSummary(cut.after, before, rep) })
}

// rebootAndVerify boots the cell again on stopped machine m's scratch disk,
// re-verifies what run runID's kept IO probe promised, and records a
// finding with summary's text.
func (r *run) rebootAndVerify(cellCtx context.Context, a crashAttempt, m Machine, runID string, summary func(ProbeReport) string) crashOutcome {
	ev := a.ev
	rb := r.opts.Provider.(Rebooter)          // checkSettings made sure
	verifier := r.opts.Prober.(CrashVerifier) // checkSettings made sure

	// reboot
	i := a.clock.start(PhaseReboot)
	dir2 := filepath.Join(a.dir, crashDir)
	if err := os.MkdirAll(dir2, 0o755); err != nil {
		a.clock.end(i, err)
		ev.Err, ev.Phase = Infra("create "+crashDir, err), PhaseReboot
		return crashOutcome{orphanScratch: m.Scratch().Path}
	}
	end := &earlyEnd{ch: make(chan struct{})}
	con, err := r.openConsole(dir2, a.ownsLog, end)
	if err != nil {
		a.clock.end(i, err)
		ev.Err, ev.Phase = err, PhaseReboot
		return crashOutcome{orphanScratch: m.Scratch().Path}
	}
	closeCon := func() { ev.Console = append(ev.Console, afterPowerCut(con.close())...) }
	req := Request{Cell: a.jb.cell, Repeat: a.jb.repeat, Dir: dir2, Console: con}
	m2, err := rb.Reboot(cellCtx, req, m)
	if err != nil {
		a.clock.end(i, err)
		closeCon()
		orphan := filepath.Join(dir2, "scratch.img")
		if a.isInterrupted() {
			_ = os.Remove(orphan)
			return crashOutcome{interrupted: true}
		}
		ev.Err, ev.Phase, ev.TimedOut = classifyHarness(err), PhaseReboot, a.timedOut()
		return crashOutcome{orphanScratch: orphan}
	}
	out := crashOutcome{next: m2, console: con}
	if p := m2.Process(); p.Pid != 0 {
		if err := r.journal.Append(journalRecord{Type: recMachine, Cell: a.jb.cell.ID, Repeat: a.jb.repeat, Attempt: a.try, Machine: &p}); err != nil {
			a.clock.end(i, err)
			ev.Err, ev.Phase = Infra("journal", err), PhaseReboot
			return out
		}
	}
	phaseCtx, cancel := context.WithCancel(cellCtx)
	defer cancel()
	go watchExit(phaseCtx, m2, end)
	go func() {
		select {
		case <-end.ch:
			cancel()
		case <-phaseCtx.Done():
		}
	}()
	host, err := m2.WaitDocker(phaseCtx)
	a.clock.end(i, err)
	if err != nil {
		switch {
		case a.isInterrupted():
			out.interrupted = true
		case end.fired(), stoppedByItself(m2):
			// the console or the machine's exit tells what happened
		case a.timedOut():
			ev.TimedOut, ev.Phase = true, PhaseReboot
		default:
			var u *UnsupportedError
			if errors.As(err, &u) || IsInfra(err) {
				ev.Err, ev.Phase = err, PhaseReboot
			} else {
				ev.DockerErr, ev.Phase = fmt.Errorf("after the power cut: %w", err), PhaseReboot
			}
		}
		return out
	}

	// verify
	i = a.clock.start(PhaseVerify)
	rep, verr := verifier.VerifyAfterCrash(phaseCtx, VerifyRequest{DockerHost: host, RunID: runID, RecordsPath: filepath.Join(a.dir, "probes-verify.jsonl")})
	a.clock.end(i, verr)
	a.run.Artifacts = addArtifact(a.run.Artifacts, "probes-verify", filepath.Join(a.rel, "probes-verify.jsonl"))
	switch {
	case a.isInterrupted():
		out.interrupted = true
		return out
	case end.fired():
		return out
	case a.timedOut():
		ev.TimedOut, ev.Phase = true, PhaseVerify
		return out
	}
	ev.Probes = mergeReports(ev.Probes, rep)
	if verr != nil && IsInfra(verr) && ev.Err == nil {
		ev.Err, ev.Phase = verr, PhaseVerify
	}
	ev.Faults = append(ev.Faults, results.Finding{Source: "runner", Category: "crash-check", Severity: "info",
		Title: summary(rep)})
	return out
}

// retire closes the machine a crash check stopped (its scratch disk
// stays), closes its console and records its artifacts and versions.
func (r *run) retire(a crashAttempt, m Machine) {
	_ = m.Close()
	a.closeConsole()
	r.machineArtifacts(a.run, m, a.rel, "", a.ownsLog)
	info := m.Info()
	a.run.KernelRelease, a.run.DockerServer, a.run.Host = info.KernelRelease, info.DockerServer, info.Host
}

// flipAndReboot is the flip-data fault: the IO probe writes and promises
// for a few seconds, keeping its container and volume; the machine shuts
// down cleanly; a promised block in the volume is corrupted on the
// stopped scratch image; then the cell boots again on it and the
// re-verification must catch the damage (data-loss, file and offset).
func (r *run) flipAndReboot(ctx, cellCtx context.Context, a crashAttempt, m Machine) crashOutcome {
	ev := a.ev
	i := a.clock.start(PhaseCorrupt)
	runID := fmt.Sprintf("flip%d%06x", a.try, time.Now().UnixNano()&0xffffff)
	rep, err := r.opts.Prober.RunProbes(cellCtx, ProbeRequest{
		DockerHost: a.host, Probes: []string{"io"}, Duration: crashCut,
		RecordsPath: filepath.Join(a.dir, "probes-flip-data.jsonl"), KeepIO: true, RunID: runID,
	})
	a.run.Artifacts = addArtifact(a.run.Artifacts, "probes-flip-data", filepath.Join(a.rel, "probes-flip-data.jsonl"))
	if err == nil {
		err = r.shutdown(ctx, m)
		if err != nil {
			ev.ShutdownErr = err
		}
	}
	var where string
	if err == nil {
		where, err = flipPromisedBlock(cellCtx, m.Scratch(), runID)
	}
	a.clock.end(i, err)
	r.retire(a, m)
	switch {
	case a.isInterrupted():
		return crashOutcome{interrupted: true}
	case a.timedOut():
		ev.TimedOut, ev.Phase = true, PhaseCorrupt
		return crashOutcome{orphanScratch: m.Scratch().Path}
	case err != nil:
		ev.Probes = mergeReports(ev.Probes, rep)
		if ev.ShutdownErr == nil && ev.Err == nil {
			ev.Err, ev.Phase = classifyHarness(err), PhaseCorrupt
		}
		return crashOutcome{orphanScratch: m.Scratch().Path}
	}
	ev.Faults = append(ev.Faults, results.Finding{Source: "runner", Category: "fault-injected", Severity: "info",
		Title: "injected fault " + flipDataFault + ": " + where})
	return r.rebootAndVerify(cellCtx, a, m, runID, verifySummary)
}

// verifySummary says what the re-verification after the reboot found.
func verifySummary(rep ProbeReport) string {
	for _, p := range rep.Probes {
		if p.Name == "io-verify" {
			return fmt.Sprintf("after the reboot %.0f promised file(s), %s verified, %d promised block(s) lost or wrong",
				p.Metrics["promised_files"], mib(p.Metrics["bytes_verified"]), len(rep.Lost))
		}
	}
	return "after the reboot: no verification result"
}

// cutResult is what happened to the IO probe whose power was cut.
type cutResult struct {
	after  time.Duration // the cut, after the IO container started
	report ProbeReport   // the probe's report when it ended before the cut
	err    error
}

// cutPower runs req's IO probe on m and kills m after it has written for
// at least after. It returns an error when the cut did not happen.
func (r *run) cutPower(ctx context.Context, m Machine, after time.Duration, req ProbeRequest) (cutResult, error) {
	started := make(chan time.Time, 1)
	var once sync.Once
	req.Started = func(probe string) {
		if probe == "io" {
			once.Do(func() { started <- time.Now() })
		}
	}
	probeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type probeEnd struct {
		rep ProbeReport
		err error
	}
	done := make(chan probeEnd, 1)
	go func() {
		rep, err := r.opts.Prober.RunProbes(probeCtx, req)
		done <- probeEnd{rep, err}
	}()
	var res cutResult
	select {
	case t := <-started:
		// Cut crashCut after the start, once the probe reported a round
		// (so it has promised something), at the latest after crashCutMax.
		tick := time.NewTicker(crashPoll)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				if now.Sub(t) < after || (now.Sub(t) < crashCutMax && !ioProgress(req.RecordsPath).known) {
					continue
				}
				_ = m.Kill()
				res.after = time.Since(t)
				cancel() // the probe talks to a dead machine now
				<-done
				return res, nil
			case e := <-done:
				res.report, res.err = e.rep, e.err
				return res, fmt.Errorf("the IO probe ended %s after it started, before the power cut: %s", time.Since(t).Round(time.Millisecond), errText(e.err))
			case <-ctx.Done():
			}
			break
		}
	case e := <-done:
		res.report, res.err = e.rep, e.err
		return res, fmt.Errorf("the IO probe never started: %s", errText(e.err))
	case <-ctx.Done():
	}
	cancel()
	<-done
	return res, ctx.Err()
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// afterPowerCut marks the rebooted machine's console findings.
func afterPowerCut(fs []results.Finding) []results.Finding {
	for i := range fs {
		fs[i].Title = "after power cut: " + fs[i].Title
	}
	return fs
}

// mergeReports appends b's evidence to a's.
func mergeReports(a, b ProbeReport) ProbeReport {
	a.Probes = append(a.Probes, b.Probes...)
	a.Lost = append(a.Lost, b.Lost...)
	a.Corrupt = append(a.Corrupt, b.Corrupt...)
	a.DaemonErrs = append(a.DaemonErrs, b.DaemonErrs...)
	a.FailedOps = append(a.FailedOps, b.FailedOps...)
	return a
}

// ioWritten is the IO probe's progress as its last metric records said.
type ioWritten struct {
	bytes, fsyncs float64
	known         bool
}

// ioProgress sums, over the IO probe's workspaces, the last progress
// record each wrote to the records file before the cut. The file is our
// own, but a cut can tear its last line: that line is ignored.
func ioProgress(path string) ioWritten {
	recs, _, err := record.ReadFile(path)
	if err != nil {
		return ioWritten{}
	}
	last := map[string]map[string]float64{}
	for _, rc := range recs {
		if rc.Probe == "io" && rc.Kind == record.KindMetric && rc.Metrics != nil {
			last[rc.Source] = rc.Metrics
		}
	}
	var w ioWritten
	for _, m := range last {
		w.bytes += m["bytes_written"]
		w.fsyncs += m["fsync_ops"]
		w.known = true
	}
	return w
}

// crashSummary says what the check did and found.
func crashSummary(after time.Duration, before ioWritten, rep ProbeReport) string {
	s := fmt.Sprintf("power cut %s after the IO probe started", after.Round(100*time.Millisecond))
	if before.known {
		s += fmt.Sprintf(" (its last report: %s written, %.0f fsyncs)", mib(before.bytes), before.fsyncs)
	}
	for _, p := range rep.Probes {
		if p.Name != "io-verify" {
			continue
		}
		m := p.Metrics
		s += fmt.Sprintf("; after the reboot %.0f promised file(s), %s verified", m["promised_files"], mib(m["bytes_verified"]))
		if n := len(rep.Lost); n > 0 {
			s += fmt.Sprintf(", %d promised block(s) lost or wrong", n)
		} else if p.OK {
			s += " intact"
		}
	}
	return s + "; writes not yet fsynced were never promised and are not counted"
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
