package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
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

// attempt runs one attempt of one (cell, repeat) as its steps, in order,
// over one attemptState; see steps.go. ok is false when the attempt was
// interrupted (Stop or ctx) and must not be recorded.
func (r *run) attempt(ctx context.Context, jb job, try int, prog Progress) (results.Run, bool) {
	s := newAttemptState(ctx, r.opts.Out, jb, try, prog)
	defer s.cleanup()
	steps := []step{r.prepare, r.boot, r.dockerReady, r.probes, r.crashCheck, r.stop, r.check}
	for _, do := range steps {
		err := do(s)
		if errors.Is(err, errInterrupted) {
			return s.run, false
		}
		if err != nil {
			break
		}
	}
	return r.judge(s), true
}

// A step is one stage of an attempt. It returns nil to go on to the next
// step, errInterrupted when Stop or the hard stop came (nothing is
// recorded), or another error when the attempt ends with it: the step has
// put what happened in the evidence, and the attempt is judged.
type step func(s *attemptState) error

// errInterrupted ends an attempt that Stop or the hard stop interrupted.
var errInterrupted = errors.New("attempt interrupted")

// attemptState is what the steps of one attempt share.
type attemptState struct {
	jb    job
	try   int
	dir   string // the run directory
	rel   string // dir relative to the results directory
	run   results.Run
	ev    Evidence
	clock *phaseClock

	// ctx is the hard stop; runCtx also ends at Stop (interrupted is then
	// closed); cellCtx also at the cell timeout; phaseCtx, which the steps
	// that wait on the machine use, also at the machine's early end.
	ctx, runCtx, cellCtx, phaseCtx context.Context
	interrupted                    chan struct{}
	cleanups                       []func() // run last first when the attempt ends

	ownsLog  bool           // the provider writes console.log itself
	end      *earlyEnd      // the current machine's
	consoles []*consoleSink // the machine's, then the rebooted machine's of a crash check
	machines []Machine      // every machine of this attempt, for their artifact errors

	mu      sync.Mutex // guards m and stopped
	m       Machine    // the current machine: torn down and closed when the attempt ends
	stopped bool       // m was stopped (or its shutdown tried): no teardown

	host         string // the current machine's DOCKER_HOST, once dockerUp
	dockerUp     bool   // dockerd in the current machine answered
	scratchReady bool   // the guest prepared its scratch disk: it may be checked
	// artifactDir and artifactKey: where the current machine's artifacts
	// are, relative to the results directory, and their names' prefix.
	artifactDir, artifactKey string
	scratch                  string // the checked scratch image; judge removes it unless retained
}

func newAttemptState(ctx context.Context, out string, jb job, try int, prog Progress) *attemptState {
	rel := RunDir(jb.cell.ID, jb.repeat)
	s := &attemptState{jb: jb, try: try, rel: rel, dir: filepath.Join(out, rel), run: baseRun(jb),
		clock: &phaseClock{prog: prog, jb: jb, try: try}, ctx: ctx, artifactDir: rel}
	s.run.Attempt = try
	s.run.Started = time.Now().UTC()
	return s
}

// onEnd makes f run when the attempt ends, before what was registered earlier.
func (s *attemptState) onEnd(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *attemptState) cleanup() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// fail records err as the harness error of phase and returns it.
func (s *attemptState) fail(phase string, err error) error {
	s.ev.Err, s.ev.Phase = err, phase
	return err
}

// watchStop makes runCtx, which Stop (graceful) and ctx (hard) end.
func (s *attemptState) watchStop(stop <-chan struct{}) {
	runCtx, cancelRun := context.WithCancel(s.ctx)
	s.onEnd(cancelRun)
	interrupted := make(chan struct{})
	s.runCtx, s.interrupted = runCtx, interrupted
	go func() {
		select {
		case <-stop:
			close(interrupted)
			cancelRun()
		case <-runCtx.Done():
		}
	}()
}

func (s *attemptState) isInterrupted() bool {
	select {
	case <-s.interrupted:
		return true
	default:
		return s.ctx.Err() != nil
	}
}

// timedOut reports whether the cell timeout ended the attempt's time.
func (s *attemptState) timedOut() bool {
	return errors.Is(s.cellCtx.Err(), context.DeadlineExceeded) && !s.isInterrupted()
}

// watchMachine gives the next machine its early end and the phase context
// that end cancels; cancel ends that context.
func (s *attemptState) watchMachine() (cancel context.CancelFunc) {
	end := &earlyEnd{ch: make(chan struct{})}
	phaseCtx, cancel := context.WithCancel(s.cellCtx)
	s.end, s.phaseCtx = end, phaseCtx
	go func() {
		select {
		case <-end.ch:
			cancel()
		case <-phaseCtx.Done():
		}
	}()
	return cancel
}

func (s *attemptState) request(dir string, console io.Writer) Request {
	return Request{Cell: s.jb.cell, Repeat: s.jb.repeat, Dir: dir, Console: console}
}

func (s *attemptState) machine() Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m
}

// adopt makes m the attempt's current machine; dockerd in it has not
// answered yet.
func (r *run) adopt(s *attemptState, m Machine) {
	s.mu.Lock()
	first := s.m == nil
	s.m = m
	s.mu.Unlock()
	s.machines = append(s.machines, m)
	s.host, s.dockerUp = "", false
	if first {
		s.onEnd(func() { r.teardown(s) })
	}
}

// teardown ends the current machine unless it was stopped, and closes it.
func (r *run) teardown(s *attemptState) {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		r.stopMachine(s.ctx, s.m)
	}
	m := s.m
	s.mu.Unlock()
	_ = m.Close()
}

// attachConsole opens the current machine's console sink, whose log goes
// to dir; closeConsoles closes it.
func (r *run) attachConsole(s *attemptState, dir string) (*consoleSink, error) {
	con, err := r.openConsole(dir, s.ownsLog, s.end)
	if err != nil {
		return nil, err
	}
	s.consoles = append(s.consoles, con)
	return con, nil
}

// closeConsoles closes the consoles still open into the evidence; the
// findings of a machine booted after a power cut say so.
func (s *attemptState) closeConsoles() {
	for i, c := range s.consoles {
		if !c.open() {
			continue
		}
		found := c.close()
		if i > 0 {
			found = afterPowerCut(found)
		}
		s.ev.Console = append(s.ev.Console, found...)
	}
}

// journalMachine journals m's host process, so that a resumed controller
// can kill it if this one dies.
func (r *run) journalMachine(s *attemptState, m Machine) error {
	p := m.Process()
	if p.Pid == 0 {
		return nil
	}
	return r.journal.Append(journalRecord{Type: recMachine, Cell: s.jb.cell.ID, Repeat: s.jb.repeat, Attempt: s.try, Machine: &p})
}

// addArtifact records file, in the run directory, as artifact name.
func (s *attemptState) addArtifact(name, file string) {
	s.run.Artifacts = addArtifact(s.run.Artifacts, name, filepath.Join(s.rel, file))
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
	if _, ok := r.opts.Provider.(PackageChanger); !ok && !s.Packages.Empty() {
		return &UnsupportedError{Reason: fmt.Sprintf("packages (%s): the %s provider boots a host it does not build and cannot change its packages",
			s.Packages, r.opts.Provider.Name())}
	}
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
