package adaptive

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// A simulated matrix: each cell's true failure probability. A tenth of the
// cells (at least 3) are flaky with failure rates spread over 2–30 %, a
// twentieth (at least 1) mostly fail (60–100 %), the rest are clean.
func scenario(n int, rng *rand.Rand) []float64 {
	fail := make([]float64, n)
	flaky := max(3, n/10)
	bad := max(1, n/20)
	for i := range flaky {
		fail[i] = 0.02 + 0.28*float64(i)/float64(max(1, flaky-1))
	}
	for i := range bad {
		fail[flaky+i] = 0.6 + 0.4*float64(i)/float64(max(1, bad))
	}
	rng.Shuffle(n, func(i, j int) { fail[i], fail[j] = fail[j], fail[i] })
	return fail
}

// correct reports whether top holds k cells each within eps of the true
// k-th best pass rate.
func correct(fail []float64, top []int, k int, eps float64) bool {
	if len(top) != k {
		return false
	}
	pass := make([]float64, len(fail))
	for i, f := range fail {
		pass[i] = 1 - f
	}
	sorted := slices.Clone(pass)
	slices.Sort(sorted)
	kth := sorted[len(sorted)-k]
	for _, i := range top {
		if pass[i] < kth-eps {
			return false
		}
	}
	return true
}

// maxSimRuns bounds a simulated run (it never binds in these scenarios).
const maxSimRuns = 1 << 20

// adaptiveRuns runs the rule until it stops; returns the runs spent and the top set.
func adaptiveRuns(r Rule, fail []float64, rng *rand.Rand) (int, []int) {
	cells := make([]Cell, len(fail))
	runs := 0
	for runs < maxSimRuns {
		d := r.Next(cells)
		if d.Stop {
			break
		}
		cells[d.Cell].Runs++
		if rng.Float64() >= fail[d.Cell] {
			cells[d.Cell].Passes++
		}
		runs++
	}
	return runs, r.Top(cells)
}

// uniformRuns gives every cell one more run per round until the same
// stopping rule is met: uniform repeats, stopped as early as the rule allows.
func uniformRuns(r Rule, fail []float64, rng *rand.Rand) (int, []int) {
	cells := make([]Cell, len(fail))
	runs := 0
	for runs < maxSimRuns {
		for i := range cells {
			cells[i].Runs++
			if rng.Float64() >= fail[i] {
				cells[i].Passes++
			}
			runs++
		}
		if r.Next(cells).Stop {
			break
		}
	}
	return runs, r.Top(cells)
}

// BenchmarkAllocation simulates matrices of 10, 50 and 200 cells with known
// failure rates, each iteration one trial (a fresh matrix and fresh
// outcomes), and reports the mean number of runs adaptive allocation and
// uniform repeats need to identify the best cell (top1) and the top 3
// (top3) within Epsilon with 95 % confidence, the ratio, and how often each
// got the answer wrong (should stay under 5 %):
//
//	go test ./internal/adaptive -run '^$' -bench Allocation -benchtime 200x
func BenchmarkAllocation(b *testing.B) {
	for _, n := range []int{10, 50, 200} {
		for _, k := range []int{1, 3} {
			b.Run(fmt.Sprintf("cells=%d/top%d", n, k), func(b *testing.B) {
				r := Rule{TopK: k, Epsilon: 0.1, Delta: 0.05}
				var ad, un, adWrong, unWrong, trials int
				for b.Loop() {
					trials++
					rng := rand.New(rand.NewPCG(uint64(trials), uint64(n*10+k)))
					fail := scenario(n, rng)
					runs, top := adaptiveRuns(r, fail, rng)
					ad += runs
					if !correct(fail, top, k, r.Epsilon) {
						adWrong++
					}
					runs, top = uniformRuns(r, fail, rng)
					un += runs
					if !correct(fail, top, k, r.Epsilon) {
						unWrong++
					}
				}
				t := float64(trials)
				b.ReportMetric(float64(ad)/t, "adaptive-runs")
				b.ReportMetric(float64(un)/t, "uniform-runs")
				b.ReportMetric(float64(ad)/float64(un), "ratio")
				b.ReportMetric(100*float64(adWrong)/t, "adaptive-wrong-%")
				b.ReportMetric(100*float64(unWrong)/t, "uniform-wrong-%")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// TestAdaptiveBeatsUniform: on a 10-cell matrix the rule needs at most a
// third of uniform repeats' runs, and is right at least 95 % of the time.
func TestAdaptiveBeatsUniform(t *testing.T) {
	r := Rule{TopK: 1, Epsilon: 0.1, Delta: 0.05}
	const trials = 100
	var ad, un, wrong int
	for trial := range trials {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		fail := scenario(10, rng)
		runs, top := adaptiveRuns(r, fail, rng)
		ad += runs
		if !correct(fail, top, 1, r.Epsilon) {
			wrong++
		}
		runs, _ = uniformRuns(r, fail, rng)
		un += runs
	}
	if ratio := float64(ad) / float64(un); ratio > 1.0/3 {
		t.Errorf("adaptive %d runs vs uniform %d: ratio %.2f > 1/3", ad/trials, un/trials, ratio)
	}
	if wrong > trials/20 {
		t.Errorf("adaptive wrong in %d of %d trials", wrong, trials)
	}
}

func TestNext(t *testing.T) {
	r := Default()
	// First runs first, skipping unsupported and broken cells.
	d := r.Next([]Cell{{Skip: true}, {Broken: true, Runs: 1}, {}})
	if d.Cell != 2 || d.Reason != "first run" {
		t.Errorf("first run: %+v", d)
	}
	// A cell in flight for its first run is not picked again for a first run.
	d = r.Next([]Cell{{Pending: 1}, {}})
	if d.Cell != 1 {
		t.Errorf("pending first run: %+v", d)
	}
	// Broken cells never run again; a lone live cell is the answer.
	d = r.Next([]Cell{{Runs: 1, Broken: true}, {Runs: 1, Passes: 1}})
	if !d.Stop || !d.Confident {
		t.Errorf("one live cell: %+v", d)
	}
	// Two clean cells with little evidence: keep going, on the leader or the challenger.
	d = r.Next([]Cell{{Runs: 2, Passes: 2}, {Runs: 1, Passes: 1}})
	if d.Stop || d.Cell < 0 {
		t.Errorf("little evidence: %+v", d)
	}
	// Enough clean passes of the leader against a failing cell: confident.
	d = r.Next([]Cell{{Runs: 60, Passes: 60}, {Runs: 10, Passes: 1}})
	if !d.Stop || !d.Confident {
		t.Errorf("clear winner: %+v", d)
	}
	// Same input, same answer.
	cells := []Cell{{Runs: 3, Passes: 3}, {Runs: 3, Passes: 2}, {Runs: 3, Passes: 3}}
	if a, b := r.Next(cells), r.Next(cells); a != b {
		t.Errorf("not deterministic: %+v then %+v", a, b)
	}
}
