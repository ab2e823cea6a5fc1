package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/adaptive"
	"github.com/matrixctl/matrixctl/matrix"
)

// Budget replaces uniform repeats (matrixctl run --budget): at most Runs
// VM-runs, or runs started within Time, spent adaptively by the rule in
// internal/adaptive — every runnable cell once, then each next run on the
// cell whose outcome can still change which cell is best, until the rule
// is confident or the budget is spent. Zero Runs and Time: no budget.
type Budget struct {
	Runs int           `json:"runs,omitempty"`
	Time time.Duration `json:"time,omitempty"`
}

// Active reports whether b asks for a budgeted run.
func (b *Budget) Active() bool { return b != nil && (b.Runs > 0 || b.Time > 0) }

// decision is one choice of the allocation rule, as journalled.
type decision struct {
	Cell   string
	Repeat int
	Reason string
}

// Stop kinds of a budgeted run (results.Budget.Stopped).
const (
	stopConfident   = "confident"
	stopBudgetSpent = "budget-spent"
	stopTimeSpent   = "time-spent"
	stopNothingLeft = "nothing-left"
	stopInterrupted = "interrupted"
)

// budgetRule is the allocation rule and how the report names it.
func budgetRule() (adaptive.Rule, string) {
	r := adaptive.Default()
	return r, fmt.Sprintf("LUCB top-%d, Wilson bounds at %.0f %% (Bonferroni over cells), tolerance %.2f",
		r.TopK, 100*(1-r.Delta), r.Epsilon)
}

// brokenRun reports whether a run proves its cell broken: the verdicts the
// report calls broken, or a fatal finding. Such a cell gets no more runs.
func brokenRun(run results.Run) bool {
	switch run.Verdict {
	case results.KernelCrash, results.DataLoss, results.FSCorruption, results.Hang:
		return true
	}
	return slices.ContainsFunc(run.Findings, func(f results.Finding) bool { return f.Severity == results.SevFatal })
}

// budgetState is the allocation rule's view of the run, rebuilt from the
// finished runs and the decisions (so a resumed run sees what the first
// controller saw).
type budgetState struct {
	cells     []matrix.Cell // runnable cells, in plan order
	index     map[string]int
	rule      adaptive.Rule
	decisions []decision
	pending   map[runKey]bool
}

func (r *run) newBudgetState(recorded []decision) *budgetState {
	rule, _ := budgetRule()
	b := &budgetState{index: map[string]int{}, rule: rule, pending: map[runKey]bool{}}
	for _, c := range r.cells {
		if c.Status != matrix.StatusUnsupported {
			b.index[c.ID] = len(b.cells)
			b.cells = append(b.cells, c)
		}
	}
	b.decisions = slices.Clone(recorded)
	return b
}

// view is the rule's input: finished counted runs, passes, broken cells,
// runs in flight. The caller holds r.mu.
func (b *budgetState) view(r *run) []adaptive.Cell {
	v := make([]adaptive.Cell, len(b.cells))
	for _, run := range r.file.Runs {
		i, ok := b.index[run.Cell]
		if !ok {
			continue
		}
		switch {
		case run.Verdict == results.Unsupported:
			v[i].Skip = true
		case run.Verdict == results.InfraError:
		default:
			v[i].Runs++
			if run.Verdict == results.Pass {
				v[i].Passes++
			}
			if brokenRun(run) {
				v[i].Broken = true
			}
		}
	}
	for k := range b.pending {
		v[b.index[k.Cell]].Pending++
	}
	for id := range r.unsupported {
		if i, ok := b.index[id]; ok {
			v[i].Skip = true
		}
	}
	return v
}

// nextRepeat is the cell's next repeat number.
func (b *budgetState) nextRepeat(cell string) int {
	n := 0
	for _, d := range b.decisions {
		if d.Cell == cell {
			n = max(n, d.Repeat)
		}
	}
	return n + 1
}

// executeBudget runs the plan under a budget (see Budget).
func (r *run) executeBudget(ctx context.Context, prog Progress, eta *etaModel, recorded []decision) (*results.File, error) {
	_, ruleName := budgetRule()
	bud := r.opts.Budget
	b := r.newBudgetState(recorded)
	// Unsupported cells get their one unsupported run, outside the budget.
	var unsupported []job
	for _, c := range r.cells {
		if c.Status == matrix.StatusUnsupported && !r.done[runKey{c.ID, 1}] {
			unsupported = append(unsupported, job{c, 1})
		}
	}
	// Recorded decisions that never finished run first, as decided.
	var replay []decision
	for _, d := range b.decisions {
		if !r.done[runKey{d.Cell, d.Repeat}] {
			replay = append(replay, d)
		}
	}
	replayKeys := make([]runKey, len(replay))
	for i, d := range replay {
		replayKeys[i] = runKey{d.Cell, d.Repeat}
	}
	eta.plan(replayKeys)
	eta.useBudget(bud, len(b.decisions))
	total := bud.Runs
	if total == 0 {
		total = len(b.decisions) + len(b.cells)
	}
	prog.Planned(total+len(unsupported)+len(r.file.Runs)-len(b.decisions)+len(replay), len(r.done))
	for _, jb := range unsupported {
		if err := r.finish(r.unsupportedRun(jb)); err != nil {
			return nil, err
		}
		prog.Done(r.lastRun(jb))
	}
	if err := r.writeResults(); err != nil {
		return nil, err
	}

	pool := newPool(r.opts)
	var slot cost
	for _, c := range b.cells {
		cc := pool.cost(c)
		slot = cost{cpus: max(slot.cpus, cc.cpus), mem: max(slot.mem, cc.mem)}
	}
	started := time.Now()
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	finished := make(chan struct{}, 1)
	var runTimes []time.Duration
	stopped, why := "", ""
	for {
		if !pool.acquire(ctx, r.opts.Stop, slot) {
			stopped, why = stopInterrupted, "interrupted: resume with --resume"
			break
		}
		r.mu.Lock()
		var d decision
		waitForRuns := false
		switch {
		case len(replay) > 0:
			d, replay = replay[0], replay[1:]
		case bud.Runs > 0 && len(b.decisions) >= bud.Runs:
			stopped, why = stopBudgetSpent, fmt.Sprintf("budget spent: %d of %d runs", len(b.decisions), bud.Runs)
		case bud.Time > 0 && time.Since(started)+meanDuration(runTimes) > bud.Time:
			stopped, why = stopTimeSpent, fmt.Sprintf("time budget spent: %s of %s, a run takes about %s",
				time.Since(started).Round(time.Second), bud.Time, meanDuration(runTimes).Round(time.Second))
		default:
			next := b.rule.Next(b.view(r))
			switch {
			case next.Stop && len(b.pending) > 0:
				waitForRuns = true // the runs in flight may change the answer
			case next.Stop && next.Confident:
				stopped, why = stopConfident, next.Reason
			case next.Stop:
				stopped, why = stopNothingLeft, next.Reason
			default:
				c := b.cells[next.Cell]
				d = decision{Cell: c.ID, Repeat: b.nextRepeat(c.ID), Reason: next.Reason}
			}
		}
		if stopped != "" || waitForRuns {
			r.mu.Unlock()
			pool.release(slot)
			if stopped != "" {
				break
			}
			select {
			case <-finished:
			case <-ctx.Done():
			}
			continue
		}
		if !slices.Contains(b.decisions, d) {
			b.decisions = append(b.decisions, d)
			if err := r.journal.Append(journalRecord{Type: recDecision, Cell: d.Cell, Repeat: d.Repeat, Reason: d.Reason}); err != nil {
				r.mu.Unlock()
				pool.release(slot)
				return nil, err
			}
		}
		key := runKey{d.Cell, d.Repeat}
		b.pending[key] = true
		jb := job{b.cells[b.index[d.Cell]], d.Repeat}
		r.mu.Unlock()
		wg.Add(1)
		go func(jb job, reason string) {
			defer wg.Done()
			defer func() {
				select {
				case finished <- struct{}{}:
				default:
				}
			}()
			defer pool.release(slot)
			t0 := time.Now()
			// The run stays pending until it is in the results, so the rule
			// never sees the cell with neither (it would decide a "first run").
			defer func() {
				r.mu.Lock()
				delete(b.pending, key)
				runTimes = append(runTimes, time.Since(t0))
				r.mu.Unlock()
			}()
			run, ok := r.runWithRetries(ctx, jb, prog)
			if !ok {
				return
			}
			run.Decision = reason
			if err := r.finish(run); err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			prog.Done(run)
		}(jb, d.Reason)
	}
	wg.Wait()
	prog.Close()
	r.mu.Lock()
	r.file.Budget = &results.Budget{Runs: bud.Runs, Time: bud.Time, Rule: ruleName, Spent: len(b.decisions),
		Stopped: stopped, StopReason: why}
	for _, c := range b.cells {
		n := 0
		for _, d := range b.decisions {
			if d.Cell == c.ID {
				n++
			}
		}
		r.file.Budget.Cells = append(r.file.Budget.Cells, results.BudgetCell{Cell: c.ID, Runs: n})
	}
	r.mu.Unlock()
	if firstErr != nil {
		return r.file, firstErr
	}
	if stopped == stopInterrupted || ctx.Err() != nil {
		if err := r.writeResults(); err != nil {
			return r.file, err
		}
		return r.file, ErrInterrupted
	}
	if err := r.journal.Append(journalRecord{Type: recStopped, Stopped: stopped, Reason: why}); err != nil {
		return r.file, err
	}
	return r.complete()
}

// meanDuration is the mean of ds (0 when empty).
func meanDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
