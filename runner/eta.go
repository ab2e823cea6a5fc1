package runner

import (
	"fmt"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// Timing is what earlier runs took: the seed of the progress estimate
// (Options.Timing) until this run has measured its own runs. cmd/matrixctl
// reads it from the history database.
type Timing struct {
	// Phases is the typical (median) duration of each phase by name.
	Phases map[string]time.Duration
	// Run is the typical duration of a whole run (0: the sum of Phases).
	Run time.Duration
	// Runs is the number of earlier runs the figures come from.
	Runs int
}

// Estimator is an optional capability of a Progress: it receives the run's
// estimate of what is left whenever a run changes phase or ends.
type Estimator interface {
	Estimate(e Estimate)
}

// Estimate is what is left of a run of a plan.
type Estimate struct {
	// At is when the estimate was made; ETA counts from it.
	At time.Time
	// Left is the number of planned runs without a final verdict.
	Left int
	// ETA is the time until the last of them ends, given Slots runs at once.
	ETA   time.Duration
	Slots int
	// Basis says where the run durations come from: "measured" (runs of
	// this run), "history" (Timing) or "default" (defaultPhaseTimes).
	Basis string
	// Budget is set for a budgeted run, which has no fixed end: what is
	// left of the budget instead of an ETA.
	Budget *BudgetLeft
}

// BudgetLeft is what is left of a budget (Budget): runs, or time, or both.
type BudgetLeft struct {
	Runs, OfRuns int
	Time, OfTime time.Duration
}

// Remaining is the ETA counted down to now (never negative).
func (e Estimate) Remaining(now time.Time) time.Duration {
	return max(0, e.ETA-now.Sub(e.At))
}

// Text is the estimate in words at now, for a progress line.
func (e Estimate) Text(now time.Time) string {
	if b := e.Budget; b != nil {
		s := "budget left:"
		if b.OfRuns > 0 {
			s += fmt.Sprintf(" %d of %d runs", b.Runs, b.OfRuns)
		}
		if b.OfTime > 0 {
			if b.OfRuns > 0 {
				s += ","
			}
			s += fmt.Sprintf(" %s of %s", max(0, b.Time-now.Sub(e.At)).Round(time.Second), b.OfTime)
		}
		return s
	}
	if e.Left == 0 {
		return "ETA 0s"
	}
	return fmt.Sprintf("ETA %s (%d left, %d at once, %s times)", e.Remaining(now).Round(time.Second), e.Left, e.Slots, e.Basis)
}

// Short is the estimate for a progress bar: the ETA (with "~" when no run
// of this run was measured yet), or a budget's runs or time left.
func (e Estimate) Short(now time.Time) string {
	if b := e.Budget; b != nil {
		if b.OfRuns > 0 {
			return fmt.Sprintf("budget: %d/%d runs left", b.Runs, b.OfRuns)
		}
		return fmt.Sprintf("budget: %s left", max(0, b.Time-now.Sub(e.At)).Round(time.Second))
	}
	approx := ""
	if e.Basis != "measured" {
		approx = "~"
	}
	return fmt.Sprintf("ETA %s%s", approx, e.Remaining(now).Round(time.Second))
}

// runPhases are the phases of an ordinary run, in order: an estimate of a
// whole run sums them, a run in flight still has the ones after its phase.
var runPhases = []string{PhasePrepare, PhaseBoot, PhaseDocker, PhaseProbes, PhaseStop, PhaseCheck}

// defaultPhaseTimes are conservative durations for a run that neither this
// run nor an earlier one measured: a QEMU VM under TCG (DESIGN.md: dockerd
// about 45 s after boot), images already built. The probes phase is the
// soak per probe plus defaultProbeOverhead.
func defaultPhaseTimes() map[string]time.Duration {
	return map[string]time.Duration{
		PhasePrepare: 20 * time.Second, PhaseBoot: 20 * time.Second, PhaseDocker: 60 * time.Second,
		PhaseStop: 15 * time.Second, PhaseCheck: 10 * time.Second,
	}
}

const defaultProbeOverhead = 20 * time.Second

// etaModel estimates the time left from the phase durations measured so
// far in this run, seeded by Timing, else defaultPhaseTimes. Safe for
// concurrent use.
type etaModel struct {
	mu    sync.Mutex
	seed  Timing
	def   map[string]time.Duration
	slots int
	now   func() time.Time

	// phase sums and counts measured in this run; runSum/runs whole runs
	phaseSum map[string]time.Duration
	phaseN   map[string]int
	runSum   time.Duration
	runs     int

	pending  map[runKey]bool // planned runs without a final verdict
	inflight map[runKey]phaseAt

	budget      *Budget
	budgetStart time.Time
	budgetSpent int // runs of the budget started (before this controller too)
}

type phaseAt struct {
	phase string
	since time.Time
}

func newETAModel(seed Timing, soak time.Duration, probes, slots int) *etaModel {
	def := defaultPhaseTimes()
	def[PhaseProbes] = time.Duration(max(probes, 1))*soak + defaultProbeOverhead
	return &etaModel{seed: seed, def: def, slots: max(slots, 1), now: time.Now,
		phaseSum: map[string]time.Duration{}, phaseN: map[string]int{},
		pending: map[runKey]bool{}, inflight: map[runKey]phaseAt{}}
}

// plan adds the runs still to do.
func (m *etaModel) plan(keys []runKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.pending[k] = true
	}
}

// useBudget makes the estimate a budget's: spent runs were started before.
func (m *etaModel) useBudget(b *Budget, spent int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.budget, m.budgetSpent, m.budgetStart = b, spent, m.now()
}

func (m *etaModel) phase(k runKey, phase string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.inflight[k]; !ok && m.budget != nil && !m.pending[k] {
		m.budgetSpent++ // a budget run this controller started
		m.pending[k] = true
	}
	m.inflight[k] = phaseAt{phase: phase, since: m.now()}
}

func (m *etaModel) done(run results.Run) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := runKey{run.Cell, run.Repeat}
	delete(m.inflight, k)
	delete(m.pending, k)
	if len(run.Phases) == 0 {
		return // never booted (unsupported): says nothing about run times
	}
	for _, p := range run.Phases {
		m.phaseSum[p.Name] += p.Duration
		m.phaseN[p.Name]++
	}
	if d := run.Finished.Sub(run.Started); d > 0 {
		m.runSum += d
		m.runs++
	}
}

// phaseTime is the estimate of one phase; the caller holds m.mu.
func (m *etaModel) phaseTime(name string) time.Duration {
	if n := m.phaseN[name]; n > 0 {
		return m.phaseSum[name] / time.Duration(n)
	}
	if d, ok := m.seed.Phases[name]; ok {
		return d
	}
	return m.def[name]
}

// runTime is the estimate of a whole run and its basis; the caller holds m.mu.
func (m *etaModel) runTime() (time.Duration, string) {
	switch {
	case m.runs > 0:
		return m.runSum / time.Duration(m.runs), "measured"
	case m.seed.Run > 0:
		return m.seed.Run, "history"
	}
	var sum time.Duration
	for _, p := range runPhases {
		sum += m.phaseTime(p)
	}
	if len(m.seed.Phases) > 0 {
		return sum, "history"
	}
	return sum, "default"
}

// left is what is left of a run in flight; the caller holds m.mu.
func (m *etaModel) left(p phaseAt, now time.Time) time.Duration {
	d := max(0, m.phaseTime(p.phase)-now.Sub(p.since))
	after := false
	for _, name := range runPhases {
		if after {
			d += m.phaseTime(name)
		}
		after = after || name == p.phase
	}
	return d
}

func (m *etaModel) estimate() Estimate {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := Estimate{At: now, Left: len(m.pending), Slots: m.slots}
	if b := m.budget; b != nil {
		e.Budget = &BudgetLeft{OfRuns: b.Runs, OfTime: b.Time}
		if b.Runs > 0 {
			e.Budget.Runs = max(0, b.Runs-m.budgetSpent)
		}
		if b.Time > 0 {
			e.Budget.Time = max(0, b.Time-now.Sub(m.budgetStart))
		}
		return e
	}
	perRun, basis := m.runTime()
	e.Basis = basis
	var work, longest time.Duration
	waiting := 0
	for k := range m.pending {
		p, ok := m.inflight[k]
		if !ok {
			waiting++
			continue
		}
		l := m.left(p, now)
		work += l
		longest = max(longest, l)
	}
	work += time.Duration(waiting) * perRun
	slots := max(1, min(m.slots, len(m.pending)))
	e.ETA = max(longest, work/time.Duration(slots))
	if waiting > 0 {
		e.ETA = max(e.ETA, perRun)
	}
	return e
}

// tracker is the Progress the runner reports to: it feeds the estimate
// and hands it to the caller's Progress when that is an Estimator.
type tracker struct {
	inner Progress
	est   Estimator
	m     *etaModel
}

func newTracker(inner Progress, m *etaModel) *tracker {
	t := &tracker{inner: inner, m: m}
	t.est, _ = inner.(Estimator)
	return t
}

func (t *tracker) publish() {
	if t.est != nil {
		t.est.Estimate(t.m.estimate())
	}
}

func (t *tracker) Planned(total, done int) {
	t.publish()
	t.inner.Planned(total, done)
}

func (t *tracker) Phase(cell string, repeat, attempt int, phase string) {
	t.m.phase(runKey{cell, repeat}, phase)
	t.publish()
	t.inner.Phase(cell, repeat, attempt, phase)
}

func (t *tracker) Done(run results.Run) {
	t.m.done(run)
	t.publish()
	t.inner.Done(run)
}

func (t *tracker) Close() { t.inner.Close() }
