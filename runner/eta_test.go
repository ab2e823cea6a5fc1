package runner

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// fakeClock is an etaModel's clock that the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestModel(seed Timing, slots int) (*etaModel, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newETAModel(seed, time.Second, 1, slots)
	m.now = clock.now
	return m, clock
}

func TestETAFromDefaultsHistoryAndMeasuredRuns(t *testing.T) {
	keys := []runKey{{"a", 1}, {"a", 2}, {"b", 1}, {"b", 2}}
	// defaults: prepare 20 + boot 20 + docker 60 + probes (1 s soak + 20) + shutdown 15 + check 10 = 146 s a run
	m, _ := newTestModel(Timing{}, 2)
	m.plan(keys)
	if e := m.estimate(); e.ETA != 2*146*time.Second || e.Basis != "default" || e.Left != 4 || e.Slots != 2 {
		t.Errorf("defaults: %+v, want 292s (4 runs of 146s, 2 at once)", e)
	}
	// history: its typical run, over the slots
	m, _ = newTestModel(Timing{Run: 100 * time.Second, Runs: 7}, 2)
	m.plan(keys)
	if e := m.estimate(); e.ETA != 200*time.Second || e.Basis != "history" {
		t.Errorf("history: %+v, want 200s", e)
	}
	// history with phases only: their sum, the defaults for the phases it lacks
	m, _ = newTestModel(Timing{Phases: map[string]time.Duration{PhaseDocker: 10 * time.Second}}, 1)
	m.plan(keys[:1])
	if e := m.estimate(); e.ETA != 96*time.Second || e.Basis != "history" {
		t.Errorf("history phases: %+v, want 96s", e)
	}
	// measured: a finished run of this run wins over the seed
	m, clock := newTestModel(Timing{Run: 100 * time.Second}, 2)
	m.plan(keys)
	start := clock.t
	m.phase(runKey{"a", 1}, PhasePrepare)
	clock.t = clock.t.Add(40 * time.Second)
	m.done(results.Run{Cell: "a", Repeat: 1, Started: start, Finished: clock.t,
		Phases: []results.Phase{{Name: PhasePrepare, Duration: 10 * time.Second}, {Name: PhaseProbes, Duration: 30 * time.Second}}})
	if e := m.estimate(); e.ETA != 60*time.Second || e.Basis != "measured" || e.Left != 3 {
		t.Errorf("measured: %+v, want 3 runs of 40s, 2 at once = 60s", e)
	}
}

func TestETAOfARunInFlight(t *testing.T) {
	m, clock := newTestModel(Timing{}, 4)
	m.plan([]runKey{{"a", 1}})
	m.phase(runKey{"a", 1}, PhaseProbes)
	clock.t = clock.t.Add(5 * time.Second)
	// probes 21 s of which 5 passed, then shutdown 15 and check 10
	if e := m.estimate(); e.ETA != 41*time.Second || e.Left != 1 {
		t.Errorf("in flight: %+v, want 41s", e)
	}
	clock.t = clock.t.Add(time.Hour) // a phase longer than expected leaves its successors
	if e := m.estimate(); e.ETA != 25*time.Second {
		t.Errorf("overdue phase: %+v, want 25s", e)
	}
	if got := (Estimate{At: clock.t, ETA: time.Minute, Left: 1, Slots: 1, Basis: "measured"}).Text(clock.t.Add(15 * time.Second)); got != "ETA 45s (1 left, 1 at once, measured times)" {
		t.Errorf("text = %q", got)
	}
}

func TestETAOfABudget(t *testing.T) {
	m, clock := newTestModel(Timing{}, 1)
	m.useBudget(&Budget{Runs: 5, Time: time.Hour}, 1)
	m.phase(runKey{"a", 2}, PhaseBoot)
	m.phase(runKey{"a", 2}, PhaseProbes) // the same run: counted once
	clock.t = clock.t.Add(10 * time.Minute)
	e := m.estimate()
	if e.Budget == nil || e.Budget.Runs != 3 || e.Budget.Time != 50*time.Minute || e.ETA != 0 {
		t.Fatalf("budget estimate %+v %+v; want 3 runs and 50m left, no ETA", e, e.Budget)
	}
	if got := e.Text(clock.t); got != "budget left: 3 of 5 runs, 50m0s of 1h0m0s" {
		t.Errorf("text = %q", got)
	}
	if got := e.Short(clock.t); got != "budget: 3/5 runs left" {
		t.Errorf("short = %q", got)
	}
}

// TestPlainProgressShowsTheEstimate: a run's line ends with the estimate
// the tracker handed over.
func TestPlainProgressShowsTheEstimate(t *testing.T) {
	var b bytes.Buffer
	p := NewPlainProgress(&b)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p.now = func() time.Time { return at }
	m, _ := newTestModel(Timing{Run: time.Minute, Runs: 3}, 1)
	m.now = p.now
	tr := newTracker(p, m)
	m.plan([]runKey{{"c", 1}, {"c", 2}})
	tr.Planned(2, 0)
	tr.Phase("c", 1, 1, PhaseBoot)
	tr.Done(results.Run{Cell: "c", Repeat: 1, Verdict: results.Pass, Started: at.Add(-time.Minute), Finished: at,
		Phases: []results.Phase{{Name: PhaseBoot, Duration: time.Minute}}})
	tr.Close()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasSuffix(lines[0], "plan: 2 runs, 0 already done; ETA 2m0s (2 left, 1 at once, history times)") {
		t.Errorf("plan line %q", lines[0])
	}
	if !strings.HasSuffix(lines[2], "[1/2] c r1: pass:  (1m0s); ETA 1m0s (1 left, 1 at once, measured times)") {
		t.Errorf("done line %q", lines[2])
	}
}

// TestTTYProgressShowsTheEstimate: the overall bar counts the ETA down.
func TestTTYProgressShowsTheEstimate(t *testing.T) {
	var b bytes.Buffer
	p := NewTTYProgress(&b)
	p.Estimate(Estimate{At: time.Now(), Left: 2, ETA: 3 * time.Minute, Slots: 1, Basis: "history"})
	p.Planned(2, 0)
	p.Phase("cell-a", 1, 1, PhaseBoot)
	time.Sleep(300 * time.Millisecond)
	p.Close()
	if !strings.Contains(b.String(), "ETA ~2m59s") && !strings.Contains(b.String(), "ETA ~3m0s") {
		t.Fatalf("no ETA on the bar: %q", b.String())
	}
}
