package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/results"
)

// phaseClock records phase timings of one attempt.
type phaseClock struct {
	phases []results.Phase
	prog   Progress
	jb     job
	try    int
}

func (c *phaseClock) start(name string) int {
	c.phases = append(c.phases, results.Phase{Name: name, Start: time.Now().UTC()})
	c.prog.Phase(c.jb.cell.ID, c.jb.repeat, c.try, name)
	return len(c.phases) - 1
}

func (c *phaseClock) end(i int, err error) {
	p := &c.phases[i]
	p.Duration = time.Since(p.Start)
	if err != nil {
		p.Error = err.Error()
	}
}

// earlyEnd is closed when the run must end before its soak is over: a
// fatal console finding or the machine stopping by itself.
type earlyEnd struct {
	once sync.Once
	ch   chan struct{}
	why  string
}

func (e *earlyEnd) fire(why string) {
	e.once.Do(func() { e.why = why; close(e.ch) })
}

// fired reports whether the run must end early.
func (e *earlyEnd) fired() bool {
	select {
	case <-e.ch:
		return true
	default:
		return false
	}
}

// attempt runs one attempt of one (cell, repeat). ok is false when the
// attempt was interrupted (Stop or ctx) and must not be recorded.
func (r *run) attempt(ctx context.Context, jb job, try int, prog Progress) (results.Run, bool) {
	rel := RunDir(jb.cell.ID, jb.repeat)
	dir := filepath.Join(r.opts.Out, rel)
	run := baseRun(jb)
	run.Attempt = try
	run.Started = time.Now().UTC()
	clock := &phaseClock{prog: prog, jb: jb, try: try}
	var ev Evidence

	finalize := func() results.Run {
		j := Judge(ev)
		run.Verdict, run.Reason, run.Findings = j.Verdict, j.Reason, j.Findings
		run.Probes = ev.Probes.Probes
		run.Phases = clock.phases
		run.Finished = time.Now().UTC()
		return run
	}

	_ = os.RemoveAll(dir) // a previous attempt or an interrupted controller's leftovers
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ev.Err, ev.Phase = Infra("create run dir", err), PhasePrepare
		return finalize(), true
	}
	if err := r.journal.Append(journalRecord{Type: recStarted, Cell: jb.cell.ID, Repeat: jb.repeat, Attempt: try}); err != nil {
		ev.Err, ev.Phase = Infra("journal", err), PhasePrepare
		return finalize(), true
	}

	// Interruption: Stop (graceful) or ctx (hard) cancel runCtx.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-r.opts.Stop:
			close(interrupted)
			cancelRun()
		case <-runCtx.Done():
		}
	}()
	isInterrupted := func() bool {
		select {
		case <-interrupted:
			return true
		default:
			return ctx.Err() != nil
		}
	}

	req := Request{Cell: jb.cell, Repeat: jb.repeat, Dir: dir}

	// prepare: fetching and building images (shared, cached, possibly
	// waiting for another cell's build of the same kernel) is not the
	// cell's time; the cell timeout starts once they are ready.
	i := clock.start(PhasePrepare)
	err := r.checkSettings(jb.cell.Settings)
	if err == nil {
		err = r.opts.Provider.Prepare(runCtx, req)
	}
	clock.end(i, err)
	if err != nil {
		if isInterrupted() {
			return run, false
		}
		ev.Err, ev.Phase = classifyHarness(err), PhasePrepare
		return finalize(), true
	}

	timeout := r.opts.Timeout
	if timeout == 0 {
		timeout = jb.cell.Settings.Timeout
	}
	cellCtx := runCtx
	if timeout > 0 {
		var cancel context.CancelFunc
		cellCtx, cancel = context.WithTimeout(runCtx, timeout)
		defer cancel()
	}
	timedOut := func() bool { return errors.Is(cellCtx.Err(), context.DeadlineExceeded) && !isInterrupted() }

	// console
	end := &earlyEnd{ch: make(chan struct{})}
	ownsLog := false
	if c, ok := r.opts.Provider.(ConsoleLogWriter); ok && c.WritesConsoleLog() {
		ownsLog = true
	}
	con, err := r.openConsole(dir, ownsLog, end)
	if err != nil {
		ev.Err, ev.Phase = err, PhaseBoot
		return finalize(), true
	}
	req.Console = con
	// consoles: the machine's, then the rebooted machine's of a crash check.
	consoles := []*consoleSink{con}
	closeConsole := func() {
		for i, c := range consoles {
			if !c.open() {
				continue
			}
			found := c.close()
			if i > 0 {
				found = afterPowerCut(found)
			}
			ev.Console = append(ev.Console, found...)
		}
	}
	defer closeConsole()

	// boot
	i = clock.start(PhaseBoot)
	m, err := r.opts.Provider.Boot(cellCtx, req)
	clock.end(i, err)
	if err != nil {
		if isInterrupted() {
			return run, false
		}
		closeConsole()
		ev.Err, ev.Phase, ev.TimedOut = classifyHarness(err), PhaseBoot, timedOut()
		return finalize(), true
	}
	machines := []Machine{m} // every machine of this attempt, for their artifact errors
	var mu sync.Mutex        // guards stopped
	stopped := false
	teardown := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		stopped = true
		r.stopMachine(ctx, m)
	}
	defer func() {
		teardown()
		_ = m.Close()
	}()
	if p := m.Process(); p.Pid != 0 {
		if err := r.journal.Append(journalRecord{Type: recMachine, Cell: jb.cell.ID, Repeat: jb.repeat, Attempt: try, Machine: &p}); err != nil {
			ev.Err, ev.Phase = Infra("journal", err), PhaseBoot
			return finalize(), true
		}
	}
	go watchExit(runCtx, m, end)
	info := m.Info()
	ev.NoConsole = info.NoConsole

	// phaseCtx ends at the cell timeout, an interruption or an early end.
	phaseCtx, cancelPhase := context.WithCancel(cellCtx)
	defer cancelPhase()
	go func() {
		select {
		case <-end.ch:
			cancelPhase()
		case <-phaseCtx.Done():
		}
	}()

	// docker-ready
	i = clock.start(PhaseDocker)
	host, err := m.WaitDocker(phaseCtx)
	clock.end(i, err)
	switch {
	case err == nil:
	case isInterrupted():
		return run, false
	case end.fired(), stoppedByItself(m):
		// the console or the machine's exit tells what happened (a
		// machine that stopped is not a dockerd that failed)
	case timedOut():
		ev.TimedOut, ev.Phase = true, PhaseDocker
	default:
		var u *UnsupportedError
		if errors.As(err, &u) || IsInfra(err) {
			ev.Err, ev.Phase = err, PhaseDocker
		} else {
			ev.DockerErr, ev.Phase = err, PhaseDocker
		}
	}

	// The guest prepared its scratch disk once dockerd answered; before that
	// the disk may hold no filesystem and checking it would report damage
	// that is not there.
	scratchReady := err == nil

	// probes
	if err == nil {
		soak := r.opts.Soak
		if soak == 0 {
			soak = jb.cell.Settings.Soak
		}
		{
			i = clock.start(PhaseProbes)
			faults := startFaults(phaseCtx, m, jb.cell.Settings.Faults)
			rep, perr := r.opts.Prober.RunProbes(phaseCtx, ProbeRequest{DockerHost: host, Probes: jb.cell.Settings.Probes, Duration: soak, RecordsPath: filepath.Join(dir, "probes.jsonl")})
			injected, ferr := faults.wait()
			ev.Faults = injected
			if ferr != nil && ev.Err == nil {
				ev.Err, ev.Phase = ferr, PhaseProbes
			}
			clock.end(i, perr)
			run.Artifacts = addArtifact(run.Artifacts, "probes", filepath.Join(rel, "probes.jsonl"))
			ev.Probes = rep
			switch {
			case isInterrupted():
				return run, false
			case end.fired():
			case timedOut():
				ev.TimedOut, ev.Phase = true, PhaseProbes
			default:
				pingCtx, cancel := context.WithTimeout(cellCtx, 30*time.Second)
				pingErr := m.Ping(pingCtx)
				cancel()
				switch {
				case pingErr != nil && !end.fired():
					ev.DockerErr, ev.Phase = fmt.Errorf("after probes: %w", pingErr), PhaseProbes
				case perr != nil && IsInfra(perr):
					ev.Err, ev.Phase = perr, PhaseProbes
				case perr != nil:
					ev.Probes.FailedOps = append(ev.Probes.FailedOps, "probes: "+perr.Error())
				}
			}
		}
	}

	// crash-consistency check: cut the power, boot again on the same
	// scratch disk, re-verify; the rebooted machine is shut down and checked.
	artifactDir, artifactKey := rel, ""
	if wantsCrashCheck(jb.cell.Settings) && err == nil && !end.fired() && !isInterrupted() && !timedOut() && ev.Err == nil {
		cc := r.crashCheck(ctx, cellCtx, crashAttempt{jb: jb, try: try, dir: dir, rel: rel, host: host, ownsLog: ownsLog, clock: clock, ev: &ev, run: &run,
			closeConsole: closeConsole, isInterrupted: isInterrupted, timedOut: timedOut}, m)
		if cc.next != nil {
			scratchReady = true // the first machine prepared the disk the next one reuses
			machines = append(machines, cc.next)
			mu.Lock()
			m = cc.next // the deferred teardown and Close now apply to it
			mu.Unlock()
			artifactDir, artifactKey = filepath.Join(rel, crashDir), crashKeyPrefix
			consoles = append(consoles, cc.console)
		}
		if cc.interrupted {
			return run, false
		}
		if cc.next == nil {
			if cc.orphanScratch != "" && !r.opts.Retain {
				_ = os.Remove(cc.orphanScratch)
			}
			return finalize(), true
		}
	}

	// shutdown
	exitedByItself := false
	select {
	case <-m.Exited():
		exitedByItself = true
	default:
	}
	if isInterrupted() {
		return run, false
	}
	if !exitedByItself {
		i = clock.start(PhaseStop)
		err := r.shutdown(ctx, m)
		clock.end(i, err)
		if err != nil {
			if isInterrupted() {
				return run, false
			}
			ev.ShutdownErr = err
		}
	}
	mu.Lock()
	stopped = true
	mu.Unlock()
	ev.Exit = m.Exit()
	if !exitedByItself && ev.Exit.Reason != ExitShutdown && ev.Exit.Reason != ExitHang {
		// We stopped it; nothing to report about the cell. A watchdog that
		// fired while we waited for the shutdown did see a silent machine.
		ev.Exit = Exit{Reason: ExitKilled}
	}
	closeConsole()
	info = m.Info()
	run.KernelRelease, run.DockerServer, run.Host = info.KernelRelease, info.DockerServer, info.Host
	r.machineArtifacts(&run, m, artifactDir, artifactKey, ownsLog)

	// check
	var artifactErrs []error // evidence that could not be kept
	scratch := m.Scratch()
	checkable := scratch.Path != "" && scratchReady && ev.Exit.Reason == ExitShutdown && ev.ShutdownErr == nil
	if checkable {
		injected, err := corruptScratch(jb.cell.Settings.Faults, scratch)
		ev.Faults = append(ev.Faults, injected...)
		if err != nil && ev.Err == nil {
			ev.Err, ev.Phase = Infra("inject fault", err), PhaseCheck
		}
	}
	if checkable && r.opts.Checker != nil {
		i = clock.start(PhaseCheck)
		res, err := r.opts.Checker.Check(ctx, scratch)
		clock.end(i, err)
		if err != nil {
			if ev.Err == nil {
				ev.Err, ev.Phase = Infra("check scratch disk", err), PhaseCheck
			}
		} else {
			ev.Checker = res
			run.Checker = res
			var b strings.Builder
			fmt.Fprintf(&b, "$ %s %s\nexit %d (clean: %v)\n\n%s", res.Tool, strings.Join(res.Args, " "), res.ExitCode, res.Clean, res.Output)
			if err := WriteFileAtomic(filepath.Join(dir, "checker.txt"), []byte(b.String()), 0o644); err != nil {
				artifactErrs = append(artifactErrs, fmt.Errorf("checker.txt: %w", err))
			} else {
				run.Artifacts = addArtifact(run.Artifacts, "checker", filepath.Join(rel, "checker.txt"))
			}
		}
	}
	for _, c := range consoles {
		if err := c.writeErr(); err != nil {
			artifactErrs = append(artifactErrs, err)
		}
	}
	for _, mm := range machines {
		if aw, ok := mm.(ArtifactWriter); ok {
			if err := aw.ArtifactErr(); err != nil {
				artifactErrs = append(artifactErrs, err)
			}
		}
	}
	if len(artifactErrs) > 0 && ev.Err == nil {
		ev.Err, ev.Phase = Infra("write artifacts", errors.Join(artifactErrs...)), "results"
	}
	out := finalize()
	if scratch.Path != "" && !(r.opts.Retain && out.Verdict != results.Pass) {
		_ = os.Remove(scratch.Path)
	}
	return out, true
}

// stoppedByItself reports whether m has stopped (WaitDocker can return
// before watchExit has fired the early end).
func stoppedByItself(m Machine) bool {
	select {
	case <-m.Exited():
		return true
	default:
		return false
	}
}

// watchExit fires end when m stops (by itself or because it was stopped).
func watchExit(ctx context.Context, m Machine, end *earlyEnd) {
	select {
	case <-m.Exited():
		end.fire("machine stopped: " + string(m.Exit().Reason))
	case <-ctx.Done():
	}
}

// machineArtifacts records m's artifacts, which live in the run directory's
// subdirectory rel, under their names prefixed with key.
func (r *run) machineArtifacts(run *results.Run, m Machine, rel, key string, ownsLog bool) {
	dir := filepath.Join(r.opts.Out, rel)
	info := m.Info()
	if !info.NoConsole && !ownsLog {
		run.Artifacts = addArtifact(run.Artifacts, key+"console", filepath.Join(rel, "console.log"))
	} else if info.NoConsole {
		_ = os.Remove(filepath.Join(dir, "console.log"))
	}
	for name, file := range m.Artifacts() {
		run.Artifacts = addArtifact(run.Artifacts, key+name, filepath.Join(rel, file))
	}
}

// shutdown stops m cleanly within the shutdown timeout, killing it if that fails.
func (r *run) shutdown(ctx context.Context, m Machine) error {
	t := r.opts.ShutdownTimeout
	if t == 0 {
		t = defaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	err := m.Shutdown(sctx)
	if err != nil {
		_ = m.Kill()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// stopMachine ends a machine that an interrupted or failed attempt leaves
// running: gracefully unless ctx (the hard stop) is done.
func (r *run) stopMachine(ctx context.Context, m Machine) {
	select {
	case <-m.Exited():
		return
	default:
	}
	if ctx.Err() != nil {
		_ = m.Kill()
		return
	}
	_ = r.shutdown(ctx, m)
}

// classifyHarness keeps typed errors and treats every other harness error
// as infrastructure.
func classifyHarness(err error) error {
	var u *UnsupportedError
	if errors.As(err, &u) || IsInfra(err) {
		return err
	}
	return &InfraError{Op: "harness", Err: err}
}

func addArtifact(m map[string]string, name, path string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[name] = path
	return m
}

// checkSettings refuses what a cell asks for that the runner cannot do yet,
// so that the cell comes out unsupported with the reason instead of passing
// without the check it asked for.
func (r *run) checkSettings(s matrix.Settings) error {
	if !wantsCrashCheck(s) {
		return nil
	}
	what := "crash_check (power cut during writes, reboot, re-verification of fsynced data)"
	if _, ok := r.opts.Provider.(Rebooter); !ok {
		return &UnsupportedError{Reason: fmt.Sprintf("%s: the %s provider cannot boot a machine again on the same scratch disk", what, r.opts.Provider.Name())}
	}
	if _, ok := r.opts.Prober.(CrashVerifier); !ok {
		return &UnsupportedError{Reason: what + ": the prober cannot re-verify the IO probe's promises"}
	}
	return nil
}
