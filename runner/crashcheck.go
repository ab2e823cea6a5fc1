package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/probes/record"
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

// crashCheck is the attempt's crash-consistency check, in place of the
// clean shutdown of the machine that ran the probes: the power cut (or the
// flip-data fault), then reboot and verify; see the comment at the top of
// this file. The rebooted machine is the attempt's from then on: the stop
// and check steps shut it down and check its scratch disk.
func (r *run) crashCheck(s *attemptState) error {
	if !wantsCrashCheck(s.jb.cell.Settings) || !s.dockerUp || s.end.fired() || s.isInterrupted() || s.timedOut() || s.ev.Err != nil {
		return nil
	}
	cut := r.powerCut
	if flipsData(s.jb.cell.Settings) {
		cut = r.flipData
	}
	kept, err := cut(s)
	if err != nil {
		return err
	}
	cancel := s.watchMachine() // the machine booted next
	defer cancel()
	if err := r.reboot(s); err != nil || !s.dockerUp {
		return err
	}
	return r.verify(s, kept)
}

// keptIO is the IO probe run whose container and volume a crash check
// kept for the re-verification, and how to sum up what it found.
type keptIO struct {
	runID   string
	summary func(ProbeReport) string
}

// powerCut cuts the machine's power while the IO probe writes and retires
// the machine; its scratch disk stays for the reboot.
func (r *run) powerCut(s *attemptState) (keptIO, error) {
	m := s.machine()
	i := s.clock.start(PhasePowerCut)
	runID := fmt.Sprintf("cut%d%06x", s.try, time.Now().UnixNano()&0xffffff)
	cutRecords := filepath.Join(s.dir, "probes-power-cut.jsonl")
	after := r.opts.PowerCutAfter
	if after == 0 {
		after = crashCut
	}
	cut, cutErr := r.cutPower(s.cellCtx, m, after, ProbeRequest{
		DockerHost: s.host, Probes: []string{"io"}, Duration: after + 2*time.Minute,
		RecordsPath: cutRecords, KeepIO: true, RunID: runID,
	})
	s.clock.end(i, cutErr)
	s.addArtifact("probes-power-cut", "probes-power-cut.jsonl")
	r.retire(s, m) // killed; its scratch disk stays for the reboot
	switch {
	case s.isInterrupted():
		return keptIO{}, errInterrupted
	case s.timedOut():
		s.ev.TimedOut, s.ev.Phase = true, PhasePowerCut
		return keptIO{}, r.dropScratch(m.Scratch().Path, s.cellCtx.Err())
	case cutErr != nil:
		// The probe ended before the cut: its report is the evidence.
		s.ev.Probes = mergeReports(s.ev.Probes, cut.report)
		if cut.err != nil && IsInfra(cut.err) && s.ev.Err == nil {
			s.ev.Err, s.ev.Phase = cut.err, PhasePowerCut
		}
		s.ev.Faults = append(s.ev.Faults, results.Finding{Source: "runner", Category: results.CatCrashCheck, Severity: results.SevWarning,
			Title: "crash check not done: " + cutErr.Error()})
		return keptIO{}, r.dropScratch(m.Scratch().Path, cutErr)
	}
	before := ioProgress(cutRecords)
	return keptIO{runID, func(rep ProbeReport) string { return crashSummary(cut.after, before, rep) }}, nil
}

// reboot boots the cell again on the stopped machine's scratch disk, up
// to dockerd, with its artifacts in crashDir. Its error ends the attempt:
// no machine booted. A machine that booted is the attempt's; a failure
// after its boot is in the evidence, and dockerUp stays false.
func (r *run) reboot(s *attemptState) error {
	prev := s.machine()
	i := s.clock.start(PhaseReboot)
	dir := filepath.Join(s.dir, crashDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.clock.end(i, err)
		return r.dropScratch(prev.Scratch().Path, s.fail(PhaseReboot, Infra("create "+crashDir, err)))
	}
	con, err := r.attachConsole(s, dir)
	if err != nil {
		s.clock.end(i, err)
		return r.dropScratch(prev.Scratch().Path, s.fail(PhaseReboot, err))
	}
	m, err := r.opts.Provider.(Rebooter).Reboot(s.cellCtx, s.request(dir, con), prev) // checkSettings made sure
	if err != nil {
		s.clock.end(i, err)
		s.closeConsoles()
		orphan := filepath.Join(dir, "scratch.img")
		if s.isInterrupted() {
			_ = os.Remove(orphan)
			return errInterrupted
		}
		s.ev.TimedOut = s.timedOut()
		return r.dropScratch(orphan, s.fail(PhaseReboot, classifyHarness(err)))
	}
	r.adopt(s, m)
	s.scratchReady = true // the first machine prepared the disk this one reuses
	s.artifactDir, s.artifactKey = filepath.Join(s.rel, crashDir), crashKeyPrefix
	if err := r.journalMachine(s, m); err != nil {
		s.clock.end(i, err)
		_ = s.fail(PhaseReboot, Infra("journal", err))
		return nil
	}
	go watchExit(s.phaseCtx, m, s.end)
	host, err := m.WaitDocker(s.phaseCtx)
	s.clock.end(i, err)
	return s.dockerWaited(host, err, PhaseReboot, "after the power cut")
}

// dropScratch removes a scratch image no machine owns any more, unless
// scratch images are retained, and returns err, which ends the attempt.
func (r *run) dropScratch(path string, err error) error {
	if path != "" && !r.opts.Retain {
		_ = os.Remove(path)
	}
	return err
}

// verify runs the kept IO container again on the rebooted machine, checks
// every block it promised, and records a finding with kept's summary.
func (r *run) verify(s *attemptState, kept keptIO) error {
	i := s.clock.start(PhaseVerify)
	rep, verr := r.opts.Prober.(CrashVerifier).VerifyAfterCrash(s.phaseCtx, VerifyRequest{ // checkSettings made sure
		DockerHost: s.host, RunID: kept.runID, RecordsPath: filepath.Join(s.dir, "probes-verify.jsonl")})
	s.clock.end(i, verr)
	s.addArtifact("probes-verify", "probes-verify.jsonl")
	switch {
	case s.isInterrupted():
		return errInterrupted
	case s.end.fired():
		return nil
	case s.timedOut():
		s.ev.TimedOut, s.ev.Phase = true, PhaseVerify
		return nil
	}
	s.ev.Probes = mergeReports(s.ev.Probes, rep)
	if verr != nil && IsInfra(verr) && s.ev.Err == nil {
		s.ev.Err, s.ev.Phase = verr, PhaseVerify
	}
	s.ev.Faults = append(s.ev.Faults, results.Finding{Source: "runner", Category: results.CatCrashCheck, Severity: results.SevInfo,
		Title: kept.summary(rep)})
	return nil
}

// retire closes the machine a crash check stopped (its scratch disk
// stays), closes its console and records its artifacts and versions.
func (r *run) retire(s *attemptState, m Machine) {
	_ = m.Close()
	s.closeConsoles()
	r.machineArtifacts(&s.run, m, s.rel, "", s.ownsLog)
	info := m.Info()
	s.run.KernelRelease, s.run.DockerServer, s.run.Host = info.KernelRelease, info.DockerServer, info.Host
}

// flipData is the flip-data fault: the IO probe writes and promises for a
// few seconds, keeping its container and volume; the machine shuts down
// cleanly; a promised block in the volume is corrupted on the stopped
// scratch image. The reboot and re-verification that follow must catch
// the damage (data-loss, file and offset).
func (r *run) flipData(s *attemptState) (keptIO, error) {
	m := s.machine()
	i := s.clock.start(PhaseCorrupt)
	runID := fmt.Sprintf("flip%d%06x", s.try, time.Now().UnixNano()&0xffffff)
	rep, err := r.opts.Prober.RunProbes(s.cellCtx, ProbeRequest{
		DockerHost: s.host, Probes: []string{"io"}, Duration: crashCut,
		RecordsPath: filepath.Join(s.dir, "probes-flip-data.jsonl"), KeepIO: true, RunID: runID,
	})
	s.addArtifact("probes-flip-data", "probes-flip-data.jsonl")
	if err == nil {
		err = r.shutdown(s.ctx, m)
		if err != nil {
			s.ev.ShutdownErr = err
		}
	}
	var where string
	if err == nil {
		where, err = flipPromisedBlock(s.cellCtx, m.Scratch(), runID)
	}
	s.clock.end(i, err)
	r.retire(s, m)
	switch {
	case s.isInterrupted():
		return keptIO{}, errInterrupted
	case s.timedOut():
		s.ev.TimedOut, s.ev.Phase = true, PhaseCorrupt
		return keptIO{}, r.dropScratch(m.Scratch().Path, s.cellCtx.Err())
	case err != nil:
		s.ev.Probes = mergeReports(s.ev.Probes, rep)
		if s.ev.ShutdownErr == nil && s.ev.Err == nil {
			s.ev.Err, s.ev.Phase = classifyHarness(err), PhaseCorrupt
		}
		return keptIO{}, r.dropScratch(m.Scratch().Path, err)
	}
	s.ev.Faults = append(s.ev.Faults, results.Finding{Source: "runner", Category: results.CatFaultInjected, Severity: results.SevInfo,
		Title: "injected fault " + flipDataFault + ": " + where})
	return keptIO{runID, verifySummary}, nil
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
