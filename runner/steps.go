package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// The steps of an attempt (attempt.go runs them in this order), each
// recording its phase:
//
//	prepare      the run directory, the journal, the images (prepare)
//	boot         the console, analysed live from now on, and the machine (boot)
//	dockerReady  up to dockerd answering (docker-ready)
//	probes       the probes, the faults injected during them, a ping (probes)
//	crashCheck   the power cut or flip-data fault, a boot on the same
//	             scratch disk and the re-verification (crashcheck.go)
//	stop         the clean shutdown (shutdown)
//	check        the faults on the stopped scratch image, the host's
//	             filesystem checker (check) and the artifacts' errors
//	judge        the verdict, after every step that ran
//
// A fatal console finding or the machine stopping by itself fires the
// machine's early end, which ends the phase context the steps wait on.

// prepare makes the run directory, journals the start and prepares the
// images. Fetching and building images (shared, cached, possibly waiting
// for another cell's build of the same kernel) is not the cell's time; the
// cell timeout starts once they are ready.
func (r *run) prepare(s *attemptState) error {
	_ = os.RemoveAll(s.dir) // a previous attempt or an interrupted controller's leftovers
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return s.fail(PhasePrepare, Infra("create run dir", err))
	}
	if err := r.journal.Append(journalRecord{Type: recStarted, Cell: s.jb.cell.ID, Repeat: s.jb.repeat, Attempt: s.try}); err != nil {
		return s.fail(PhasePrepare, Infra("journal", err))
	}
	s.watchStop(r.opts.Stop)

	i := s.clock.start(PhasePrepare)
	err := r.checkSettings(s.jb.cell.Settings)
	if err == nil {
		err = r.opts.Provider.Prepare(s.runCtx, s.request(s.dir, nil))
	}
	s.clock.end(i, err)
	if err != nil {
		if s.isInterrupted() {
			return errInterrupted
		}
		return s.fail(PhasePrepare, classifyHarness(err))
	}
	if pf, ok := r.opts.Provider.(Preflighter); ok {
		s.ev.Preflight = pf.Preflight(s.request(s.dir, nil))
	}

	timeout := r.opts.Timeout
	if timeout == 0 {
		timeout = s.jb.cell.Settings.Timeout
	}
	s.cellCtx = s.runCtx
	if timeout > 0 {
		var cancel context.CancelFunc
		s.cellCtx, cancel = context.WithTimeout(s.runCtx, timeout)
		s.onEnd(cancel)
	}
	return nil
}

// boot opens the console, boots the machine, journals its process and
// watches it stop.
func (r *run) boot(s *attemptState) error {
	if c, ok := r.opts.Provider.(ConsoleLogWriter); ok && c.WritesConsoleLog() {
		s.ownsLog = true
	}
	s.onEnd(s.watchMachine())
	con, err := r.attachConsole(s, s.dir)
	if err != nil {
		return s.fail(PhaseBoot, err)
	}
	s.onEnd(s.closeConsoles)

	i := s.clock.start(PhaseBoot)
	m, err := r.opts.Provider.Boot(s.cellCtx, s.request(s.dir, con))
	s.clock.end(i, err)
	if err != nil {
		if s.isInterrupted() {
			return errInterrupted
		}
		s.closeConsoles()
		s.ev.TimedOut = s.timedOut()
		return s.fail(PhaseBoot, classifyHarness(err))
	}
	r.adopt(s, m)
	if err := r.journalMachine(s, m); err != nil {
		return s.fail(PhaseBoot, Infra("journal", err))
	}
	go watchExit(s.runCtx, m, s.end)
	s.ev.NoConsole = m.Info().NoConsole
	return nil
}

// dockerReady waits for dockerd in the machine. The guest prepared its
// scratch disk once dockerd answered; before that the disk may hold no
// filesystem and checking it would report damage that is not there.
func (r *run) dockerReady(s *attemptState) error {
	i := s.clock.start(PhaseDocker)
	host, err := s.machine().WaitDocker(s.phaseCtx)
	s.clock.end(i, err)
	if err := s.dockerWaited(host, err, PhaseDocker, ""); err != nil {
		return err
	}
	s.scratchReady = s.dockerUp
	return nil
}

// dockerWaited records how waiting for dockerd in the current machine
// ended in phase; prefix, if any, says which machine it was.
func (s *attemptState) dockerWaited(host string, err error, phase, prefix string) error {
	switch {
	case err == nil:
		s.host, s.dockerUp = host, true
	case s.isInterrupted():
		return errInterrupted
	case s.end.fired(), stoppedByItself(s.machine()):
		// the console or the machine's exit tells what happened (a
		// machine that stopped is not a dockerd that failed)
	case s.timedOut():
		s.ev.TimedOut, s.ev.Phase = true, phase
	default:
		var u *UnsupportedError
		if errors.As(err, &u) || IsInfra(err) {
			s.ev.Err, s.ev.Phase = err, phase
			break
		}
		if prefix != "" {
			err = fmt.Errorf("%s: %w", prefix, err)
		}
		s.ev.DockerErr, s.ev.Phase = err, phase
	}
	return nil
}

// probes runs the probes for the soak with the faults injected during
// them, then asks dockerd whether it still answers.
func (r *run) probes(s *attemptState) error {
	if !s.dockerUp {
		return nil
	}
	soak := r.opts.Soak
	if soak == 0 {
		soak = s.jb.cell.Settings.Soak
	}
	m := s.machine()
	i := s.clock.start(PhaseProbes)
	faults := startFaults(s.phaseCtx, m, s.jb.cell.Settings.Faults)
	req := ProbeRequest{DockerHost: s.host, Probes: s.jb.cell.Settings.Probes, Duration: soak, RecordsPath: filepath.Join(s.dir, "probes.jsonl"), Sequential: r.opts.ProbesSequential}
	s.run.ProbeMode = req.Mode()
	rep, perr := r.opts.Prober.RunProbes(s.phaseCtx, req)
	injected, ferr := faults.wait()
	s.ev.Faults = injected
	if ferr != nil && s.ev.Err == nil {
		s.ev.Err, s.ev.Phase = ferr, PhaseProbes
	}
	s.clock.end(i, perr)
	s.addArtifact("probes", "probes.jsonl")
	s.ev.Probes = rep
	switch {
	case s.isInterrupted():
		return errInterrupted
	case s.end.fired():
	case s.timedOut():
		s.ev.TimedOut, s.ev.Phase = true, PhaseProbes
	default:
		s.afterProbes(m, perr)
	}
	return nil
}

// afterProbes records whether dockerd still answers after the probes and
// how the probes failed, if they did.
func (s *attemptState) afterProbes(m Machine, perr error) {
	pingCtx, cancel := context.WithTimeout(s.cellCtx, 30*time.Second)
	pingErr := m.Ping(pingCtx)
	cancel()
	switch {
	case pingErr != nil && !s.end.fired():
		s.ev.DockerErr, s.ev.Phase = fmt.Errorf("after probes: %w", pingErr), PhaseProbes
	case perr != nil && IsInfra(perr):
		s.ev.Err, s.ev.Phase = perr, PhaseProbes
	case perr != nil:
		s.ev.Probes.FailedOps = append(s.ev.Probes.FailedOps, "probes: "+perr.Error())
	}
}

// stop shuts the machine down cleanly unless it stopped by itself, and
// records how it ended, its console's findings, its versions and artifacts.
func (r *run) stop(s *attemptState) error {
	m := s.machine()
	exitedByItself := stoppedByItself(m)
	if s.isInterrupted() {
		return errInterrupted
	}
	if !exitedByItself {
		i := s.clock.start(PhaseStop)
		err := r.shutdown(s.ctx, m)
		s.clock.end(i, err)
		if err != nil {
			if s.isInterrupted() {
				return errInterrupted
			}
			s.ev.ShutdownErr = err
		}
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.ev.Exit = m.Exit()
	if !exitedByItself && s.ev.Exit.Reason != ExitShutdown && s.ev.Exit.Reason != ExitHang {
		// We stopped it; nothing to report about the cell. A watchdog that
		// fired while we waited for the shutdown did see a silent machine.
		s.ev.Exit = Exit{Reason: ExitKilled}
	}
	s.closeConsoles()
	info := m.Info()
	s.run.KernelRelease, s.run.DockerServer, s.run.Host = info.KernelRelease, info.DockerServer, info.Host
	r.machineArtifacts(&s.run, m, s.artifactDir, s.artifactKey, s.ownsLog)
	return nil
}

// check injects the faults that go on the stopped scratch image, runs the
// host's filesystem checker on it when the machine shut down cleanly, and
// records the evidence that could not be kept.
func (r *run) check(s *attemptState) error {
	var artifactErrs []error
	scratch := s.machine().Scratch()
	s.scratch = scratch.Path
	if scratch.Path != "" && s.scratchReady && s.ev.Exit.Reason == ExitShutdown && s.ev.ShutdownErr == nil {
		injected, err := corruptScratch(s.jb.cell.Settings.Faults, scratch)
		s.ev.Faults = append(s.ev.Faults, injected...)
		if err != nil && s.ev.Err == nil {
			s.ev.Err, s.ev.Phase = Infra("inject fault", err), PhaseCheck
		}
		if r.opts.Checker != nil {
			if err := r.runChecker(s, scratch); err != nil {
				artifactErrs = append(artifactErrs, err)
			}
		}
	}
	for _, c := range s.consoles {
		if err := c.writeErr(); err != nil {
			artifactErrs = append(artifactErrs, err)
		}
	}
	for _, m := range s.machines {
		if aw, ok := m.(ArtifactWriter); ok {
			if err := aw.ArtifactErr(); err != nil {
				artifactErrs = append(artifactErrs, err)
			}
		}
	}
	if len(artifactErrs) > 0 && s.ev.Err == nil {
		s.ev.Err, s.ev.Phase = Infra("write artifacts", errors.Join(artifactErrs...)), "results"
	}
	return nil
}

// runChecker checks scratch with the host's checker and keeps its output
// in checker.txt; the error is checker.txt's.
func (r *run) runChecker(s *attemptState, scratch Scratch) error {
	i := s.clock.start(PhaseCheck)
	res, err := r.opts.Checker.Check(s.ctx, scratch)
	s.clock.end(i, err)
	if err != nil {
		if s.ev.Err == nil {
			s.ev.Err, s.ev.Phase = Infra("check scratch disk", err), PhaseCheck
		}
		return nil
	}
	s.ev.Checker = res
	s.run.Checker = res
	var b strings.Builder
	fmt.Fprintf(&b, "$ %s %s\nexit %d (clean: %v)\n\n%s", res.Tool, strings.Join(res.Args, " "), res.ExitCode, res.Clean, res.Output)
	if err := WriteFileAtomic(filepath.Join(s.dir, "checker.txt"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("checker.txt: %w", err)
	}
	s.addArtifact("checker", "checker.txt")
	return nil
}

// judge gives the attempt its verdict from the evidence, and removes the
// checked scratch image unless it is retained (a failed run, Retain).
func (r *run) judge(s *attemptState) results.Run {
	j := Judge(s.ev)
	s.run.Verdict, s.run.Reason, s.run.Findings = j.Verdict, j.Reason, j.Findings
	s.run.Probes = s.ev.Probes.Probes
	s.run.Phases = s.clock.phases
	s.run.Finished = time.Now().UTC()
	if s.scratch != "" && !(r.opts.Retain && s.run.Verdict != results.Pass) {
		_ = os.Remove(s.scratch)
	}
	return s.run
}
