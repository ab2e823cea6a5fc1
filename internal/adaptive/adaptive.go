// Package adaptive decides where the next VM-run of a budget goes: to the
// cell whose outcome can still change which cells are the best (matrixctl
// run --budget). It is pure — no I/O, no clock, no randomness — so the
// runner and the simulation benchmark (bench_test.go) share one rule, and
// the same evidence always gives the same decision.
//
// The rule is LUCB (Kalyanakrishnan, Tewari, Auer, Stone: "PAC subset
// selection in stochastic multi-armed bandits", ICML 2012), with Wilson
// score bounds on each cell's pass rate:
//
//  1. Every runnable cell gets a first run.
//  2. The top set T is the k cells with the highest observed pass rate
//     (ties: the higher lower bound, then the lower index).
//  3. Stop, confident, when every cell in T has a lower bound at least the
//     upper bound of every cell outside T, minus Epsilon: then T is the
//     top k within Epsilon, with confidence 1 − Delta.
//  4. Otherwise the next run goes to whichever of two cells narrows the gap
//     between them most in expectation: the leader, the cell of T with the lowest lower bound (is
//     it really that good?), or the challenger, the cell outside T with the
//     highest upper bound (could it be better?). Every other cell is
//     already clearly in or clearly out, and gets nothing.
//  5. A cell proved broken (a kernel crash, data loss, fs corruption or a
//     hang is a proof, not a rate) never gets another run.
//
// The bounds are Wilson score bounds at the normal quantile of Delta/(2N),
// a Bonferroni correction over the N cells. Epsilon is the tolerance: two
// cells that both always pass cannot be told apart by any number of runs,
// so "the best" means "within Epsilon of the best".
package adaptive

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Cell is what the rule knows of one cell.
type Cell struct {
	// Runs and Passes count the cell's finished, counted runs.
	Runs, Passes int
	// Pending counts the runs started and not finished (--parallel).
	Pending int
	// Broken: a run proved the cell broken; it gets no more runs.
	Broken bool
	// Skip: the cell is not to be run (unsupported); it gets no runs.
	Skip bool
}

// Rule is the decision rule's parameters.
type Rule struct {
	// TopK is how many best cells to identify (default 1).
	TopK int
	// Epsilon is the tolerance on the pass rate (default 0.1).
	Epsilon float64
	// Delta is the error probability (default 0.05: 95 % confidence).
	Delta float64
}

// Default is the rule matrixctl run --budget uses.
func Default() Rule { return Rule{TopK: 1, Epsilon: 0.1, Delta: 0.05} }

// Decision is the rule's answer.
type Decision struct {
	// Cell is the index of the cell to run next; -1 when Stop.
	Cell int
	// Reason says why, in words, for the journal and the report.
	Reason string
	// Stop: no run can change the answer (Confident), or nothing is left to run.
	Stop      bool
	Confident bool
}

// Bounds are a cell's Wilson bounds on its pass rate.
type Bounds struct{ Lower, Upper float64 }

// Next decides the next run.
func (r Rule) Next(cells []Cell) Decision {
	r = r.withDefaults()
	live := make([]int, 0, len(cells))
	for i, c := range cells {
		if c.Skip || c.Broken {
			continue
		}
		if c.Runs+c.Pending == 0 {
			return Decision{Cell: i, Reason: "first run"}
		}
		live = append(live, i)
	}
	if len(live) == 0 {
		return Decision{Cell: -1, Stop: true, Reason: "no cell left to run"}
	}
	z := r.z(len(cells))
	b := make([]Bounds, len(cells))
	for _, i := range live {
		b[i] = wilson(cells[i].Passes, cells[i].Runs, z)
	}
	top, rest := r.split(cells, live, b)
	if len(rest) == 0 {
		return Decision{Cell: -1, Stop: true, Confident: true,
			Reason: fmt.Sprintf("confident: only %d cells can run, all in the top %d", len(live), r.TopK)}
	}
	leader := slices.MinFunc(top, func(x, y int) int { return cmp.Or(cmp.Compare(b[x].Lower, b[y].Lower), cmp.Compare(x, y)) })
	challenger := slices.MaxFunc(rest, func(x, y int) int { return cmp.Or(cmp.Compare(b[x].Upper, b[y].Upper), cmp.Compare(y, x)) })
	if b[leader].Lower >= b[challenger].Upper-r.Epsilon {
		return Decision{Cell: -1, Stop: true, Confident: true,
			Reason: fmt.Sprintf("confident: the top %d's lowest lower bound %.2f ≥ the others' highest upper bound %.2f − %.2f",
				r.TopK, b[leader].Lower, b[challenger].Upper, r.Epsilon)}
	}
	// The run that most narrows the gap between the leader's lower bound and
	// the challenger's upper bound, in expectation (pass probability
	// estimated as (passes+1)/(runs+2)): a challenger that always passed
	// keeps an upper bound of 1 after another pass, so it only gets runs
	// when a failure is likely enough to matter. A run in flight counts as
	// a run already made, so parallel slots spread over the two.
	gain := func(i int, lowerSide bool) float64 {
		c := cells[i]
		n := c.Runs + c.Pending
		pHat := float64(c.Passes+1) / float64(c.Runs+2)
		now := b[i]
		pass := wilson(c.Passes+1+c.Pending, n+1, z)
		fail := wilson(c.Passes, n+1, z)
		if lowerSide {
			return pHat*(pass.Lower-now.Lower) + (1-pHat)*(fail.Lower-now.Lower)
		}
		return pHat*(now.Upper-pass.Upper) + (1-pHat)*(now.Upper-fail.Upper)
	}
	if gain(challenger, false) > gain(leader, true) {
		return Decision{Cell: challenger, Reason: fmt.Sprintf("challenger: highest upper bound %.2f outside the top %d",
			b[challenger].Upper, r.TopK)}
	}
	return Decision{Cell: leader, Reason: fmt.Sprintf("leader: lowest lower bound %.2f in the top %d",
		b[leader].Lower, r.TopK)}
}

// Top returns the indexes of the current top set, best first.
func (r Rule) Top(cells []Cell) []int {
	r = r.withDefaults()
	var live []int
	for i, c := range cells {
		if !c.Skip && !c.Broken && c.Runs > 0 {
			live = append(live, i)
		}
	}
	z := r.z(len(cells))
	b := make([]Bounds, len(cells))
	for _, i := range live {
		b[i] = wilson(cells[i].Passes, cells[i].Runs, z)
	}
	top, _ := r.split(cells, live, b)
	return top
}

// split orders the live cells best first and cuts after TopK.
func (r Rule) split(cells []Cell, live []int, b []Bounds) (top, rest []int) {
	order := slices.Clone(live)
	rate := func(i int) float64 { return float64(cells[i].Passes) / float64(cells[i].Runs) }
	slices.SortStableFunc(order, func(x, y int) int {
		return cmp.Or(cmp.Compare(rate(y), rate(x)), cmp.Compare(b[y].Lower, b[x].Lower), cmp.Compare(x, y))
	})
	k := min(r.TopK, len(order))
	return order[:k], order[k:]
}

func (r Rule) withDefaults() Rule {
	d := Default()
	if r.TopK <= 0 {
		r.TopK = d.TopK
	}
	if r.Epsilon <= 0 {
		r.Epsilon = d.Epsilon
	}
	if r.Delta <= 0 || r.Delta >= 1 {
		r.Delta = d.Delta
	}
	return r
}

// z is the normal quantile for a two-sided bound at Delta/N (Bonferroni).
func (r Rule) z(n int) float64 {
	return normalQuantile(1 - r.Delta/(2*float64(max(n, 1))))
}

// wilson is the Wilson score interval of passes out of n at quantile z.
func wilson(passes, n int, z float64) Bounds {
	if n <= 0 {
		return Bounds{0, 1}
	}
	p := float64(passes) / float64(n)
	nf := float64(n)
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	den := 1 + z2/nf
	return Bounds{Lower: math.Max(0, (centre-margin)/den), Upper: math.Min(1, (centre+margin)/den)}
}

// normalQuantile is the inverse of the standard normal CDF (p in (0, 1)),
// by bisection on math.Erf: plenty precise for confidence bounds.
func normalQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if 0.5*(1+math.Erf(mid/math.Sqrt2)) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
