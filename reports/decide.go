package reports

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// The decision: which combination to put in production, and how sure we are.
// `matrixctl recommend` and the report's "Most stable" and "Never use"
// panels share it (Decide), so they never disagree.
//
//  1. Candidates are the ranked cells that satisfy every constraint.
//  2. Broken cells (a kernel crash, data loss, fs corruption or hang is a
//     proof, not a rate) and failing cells (no counted pass) are
//     disqualified: they are what "Never use" lists.
//  3. The winner is the first qualified candidate in the report's ranking
//     order (Wilson lower bound of the pass rate, then class — so a clean
//     cell beats one whose kernel warned on the same evidence — then
//     performance). Its confidence is that Wilson bound, and P(best): the
//     probability that it truly has the highest chance of a clean pass among
//     the qualified candidates, from Beta posteriors (a pass with kernel
//     warnings counts half a pass and half a failure, so clean cells are
//     preferred) sampled with a fixed seed, so the same evidence always
//     gives the same figure.
//  4. With too little evidence — the winner's Wilson lower bound under
//     MinConfidence, e.g. fewer than 4 passes without a failure — the answer
//     says so and names the best so far instead of a winner.

// MinConfidence is the Wilson lower bound (95 %) of the pass rate a winner
// needs: 4/4 passes (0.51) is enough, 3/3 (0.44) is not.
const MinConfidence = 0.5

// pBestSamples and pBestSeed fix the Monte Carlo estimate of P(best).
const (
	pBestSamples = 20000
	pBestSeed    = 17
)

// Outcome says what a Decision concluded.
type Outcome string

// Decision outcomes.
const (
	// OutcomeWinner: a qualified cell with enough evidence.
	OutcomeWinner Outcome = "winner"
	// OutcomeTooLittleEvidence: qualified cells exist, but the best of them
	// has not run often enough to be trusted.
	OutcomeTooLittleEvidence Outcome = "too-little-evidence"
	// OutcomeNoneQualifies: no cell satisfies the constraints and is neither
	// broken nor failing.
	OutcomeNoneQualifies Outcome = "none-qualifies"
)

// Decision is the answer to "which combination, and how sure are we".
type Decision struct {
	Constraints []string `json:"constraints"`
	Outcome     Outcome  `json:"outcome"`
	// Summary is the answer in one sentence.
	Summary string `json:"summary"`
	// Cells is the number of ranked cells considered, Qualified the number
	// that satisfy the constraints and are neither broken nor failing.
	Cells     int `json:"cells"`
	Qualified int `json:"qualified"`
	// Winner is the best qualified cell (also set, as "best so far", when the
	// outcome is too-little-evidence).
	Winner *Choice `json:"winner,omitempty"`
	// RunnerUp is the next qualified cell, with why it lost.
	RunnerUp *Choice `json:"runner_up,omitempty"`
	// Disqualified lists the cells nearest to qualifying (fewest reasons
	// first) and what disqualified each; all of them when none qualifies.
	Disqualified []Disqualified `json:"disqualified"`
	// MinConfidence is the Wilson lower bound a winner needs.
	MinConfidence float64 `json:"min_confidence"`
	// Method is the decision rule in prose.
	Method string `json:"method"`
}

// Choice is a cell with the evidence for (or against) it.
type Choice struct {
	Cell    string                  `json:"cell"`
	Kernel  string                  `json:"kernel"`
	Distro  string                  `json:"distro"`
	Docker  string                  `json:"docker"`
	Driver  string                  `json:"driver"`
	Init    string                  `json:"init,omitempty"`
	Cgroup  string                  `json:"cgroup,omitempty"`
	Scratch string                  `json:"scratch,omitempty"`
	Class   Class                   `json:"class"`
	Runs    int                     `json:"runs"`
	Counted int                     `json:"counted_runs"`
	Passed  int                     `json:"passed_runs"`
	Warned  int                     `json:"warned_runs"`
	Verdict map[results.Verdict]int `json:"verdicts"`
	// WilsonLower is the 95 % lower bound of the pass rate; PBest the
	// probability that this cell is truly the best candidate.
	WilsonLower float64  `json:"wilson_lower"`
	PBest       float64  `json:"p_best"`
	PerfScore   float64  `json:"perf_score"`
	HasPerf     bool     `json:"has_perf"`
	Warnings    []string `json:"warnings,omitempty"`
	// LastFailure is the latest counted run that did not pass.
	LastFailure *Failure `json:"last_failure,omitempty"`
	// Why is, for a runner-up, why it lost to the winner.
	Why string `json:"why,omitempty"`
}

// Failure is one failed run, for the evidence.
type Failure struct {
	Verdict results.Verdict `json:"verdict"`
	Reason  string          `json:"reason,omitempty"`
	Started time.Time       `json:"started,omitzero"`
}

// Disqualified is a cell that did not qualify, and why.
type Disqualified struct {
	Cell    string   `json:"cell"`
	Class   Class    `json:"class"`
	Reasons []string `json:"reasons"`
}

// DecisionMethod is the rule in prose, printed with every answer.
func DecisionMethod() string {
	return fmt.Sprintf("Candidates are the ranked cells that satisfy every constraint; broken cells (a crash, data loss, "+
		"fs corruption or hang is a proof) and failing cells (no pass) are disqualified. The winner is the first candidate "+
		"in the ranking order (Wilson lower bound of the pass rate, then class: a clean cell beats one whose kernel warned, "+
		"then performance). Confidence: its Wilson lower bound (95 %%), which must reach %.2f (e.g. 4 of 4 passed) or the "+
		"answer is \"too little evidence\"; and P(best), the probability that it has the highest chance of a clean pass "+
		"among the candidates (Beta posteriors, a pass with kernel warnings counting half, %d samples, fixed seed).",
		MinConfidence, pBestSamples)
}

// Decide answers with the most stable cell of r that satisfies cons.
func (r *Report) Decide(cons []Constraint) *Decision {
	d := &Decision{Outcome: OutcomeNoneQualifies, Method: DecisionMethod(), MinConfidence: MinConfidence, Disqualified: []Disqualified{},
		Constraints: []string{}}
	for _, c := range cons {
		d.Constraints = append(d.Constraints, c.Expr)
	}
	var qualified []*CellScore
	for _, c := range r.Ranking { // already in ranking order
		d.Cells++
		var reasons []string
		for _, con := range cons {
			if ok, why := con.Match(r.axis(c, con.Key)); !ok {
				reasons = append(reasons, why)
			}
		}
		switch c.Class {
		case ClassBroken, ClassFailing:
			reasons = append(reasons, fmt.Sprintf("%s: %s", c.Class, c.Reason))
		}
		if len(reasons) > 0 {
			d.Disqualified = append(d.Disqualified, Disqualified{Cell: c.Cell, Class: c.Class, Reasons: reasons})
			continue
		}
		qualified = append(qualified, c)
	}
	// Nearest first: fewest reasons, then ranking order (stable sort).
	slices.SortStableFunc(d.Disqualified, func(a, b Disqualified) int { return cmp.Compare(len(a.Reasons), len(b.Reasons)) })
	d.Qualified = len(qualified)
	if len(qualified) == 0 {
		d.Summary = "No combination qualifies"
		if len(cons) > 0 {
			d.Summary += ": none satisfies " + strings.Join(d.Constraints, ", ") + " without being broken or failing"
		}
		return d
	}
	pWinner, pRunnerUp := probBest(qualified)
	d.Winner = r.choice(qualified[0], pWinner)
	if len(qualified) > 1 {
		d.RunnerUp = r.choice(qualified[1], pRunnerUp)
		d.RunnerUp.Why = whyLost(qualified[1], qualified[0])
	}
	const maxNear = 5
	if len(d.Disqualified) > maxNear {
		d.Disqualified = d.Disqualified[:maxNear]
	}
	w := d.Winner
	if w.WilsonLower < MinConfidence {
		d.Outcome = OutcomeTooLittleEvidence
		d.Summary = fmt.Sprintf("Too little evidence to name a winner: the best so far is %s (%d/%d passed, "+
			"Wilson lower bound %.2f < %.2f, P(best) %.2f)", w.Cell, w.Passed, w.Counted, w.WilsonLower, MinConfidence, w.PBest)
		return d
	}
	d.Outcome = OutcomeWinner
	d.Summary = fmt.Sprintf("Use %s: %d/%d passed, Wilson lower bound %.2f, P(best) %.2f", w.Cell, w.Passed, w.Counted,
		w.WilsonLower, w.PBest)
	if w.Warned > 0 {
		d.Summary += fmt.Sprintf("; note: %d of its passes had kernel warnings", w.Warned)
	}
	return d
}

// axis is cell c's value for a constraint key.
func (r *Report) axis(c *CellScore, key string) string {
	switch key {
	case "kernel":
		return c.Kernel
	case "distro":
		return c.Distro
	case "docker":
		return c.Docker
	case "driver":
		return c.Driver
	case "cgroup":
		return c.Cgroup
	case "init":
		return c.Init
	case "scratch":
		return c.Scratch
	}
	return c.Cell
}

// choice is c's evidence as a Choice.
func (r *Report) choice(c *CellScore, pBest float64) *Choice {
	ch := &Choice{Cell: c.Cell, Kernel: c.Kernel, Distro: c.Distro, Docker: c.Docker, Driver: c.Driver, Init: c.Init,
		Cgroup: c.Cgroup, Scratch: c.Scratch, Class: c.Class, Runs: c.Runs, Counted: c.Counted, Passed: c.Passed,
		Warned: c.Warned, Verdict: c.Verdicts, WilsonLower: c.WilsonLower, PBest: round4(pBest), PerfScore: c.PerfScore,
		HasPerf: c.HasPerf, Warnings: c.Warnings}
	for _, run := range r.runs[c.Cell] {
		if !countedVerdict(run.Verdict) || run.Verdict == results.Pass {
			continue
		}
		if ch.LastFailure == nil || !run.Started.Before(ch.LastFailure.Started) {
			ch.LastFailure = &Failure{Verdict: run.Verdict, Reason: shorten(CleanLine(run.Reason), 240), Started: run.Started}
		}
	}
	return ch
}

// whyLost says why the runner-up b ranks after the winner a, naming the
// first ranking key that separates them.
func whyLost(b, a *CellScore) string {
	switch {
	case b.WilsonLower < a.WilsonLower:
		if b.Passed < b.Counted {
			return fmt.Sprintf("lower confidence: %d of %d runs failed (Wilson lower bound %.2f < %.2f)",
				b.Counted-b.Passed, b.Counted, b.WilsonLower, a.WilsonLower)
		}
		return fmt.Sprintf("less evidence: %d/%d passed (Wilson lower bound %.2f < %.2f)", b.Passed, b.Counted,
			b.WilsonLower, a.WilsonLower)
	case classTier(b.Class) > classTier(a.Class):
		if b.Warned > a.Warned {
			return fmt.Sprintf("its kernel printed warnings in %d of %d passes (%s); the winner's did not",
				b.Warned, b.Passed, strings.Join(b.Warnings, "; "))
		}
		return fmt.Sprintf("its class is %s, the winner's %s", b.Class, a.Class)
	case a.HasPerf && !b.HasPerf:
		return "as stable on this evidence, but it has no performance figures"
	case b.PerfGroup > a.PerfGroup:
		return fmt.Sprintf("as stable on this evidence; lower performance beyond the noise (%.1f < %.1f)", b.PerfScore, a.PerfScore)
	case b.Passed < a.Passed:
		return fmt.Sprintf("as stable on this evidence; fewer passes (%d < %d)", b.Passed, a.Passed)
	}
	return "indistinguishable on this evidence; ordered by cell ID"
}

// probBest estimates the probability that the winner (cells[0]) and the
// runner-up (cells[1]) have the highest chance of a clean pass among cells:
// Beta(1 + clean + warned/2, 1 + failed + warned/2) posteriors, sampled
// pBestSamples times with a fixed seed.
//
// Only the first two are sampled. The others enter each sample exactly,
// through their CDF: with t the better of the two draws, "no other cell
// beats t" has probability the product of I_t(α, β)^k over the distinct
// posteriors (k cells share each), and one uniform draw decides it. That
// is the same estimator as drawing every cell, in O(distinct posteriors)
// rather than O(cells) per sample: thousands of ranked cells mostly share
// a handful of (passed, counted) pairs.
func probBest(cells []*CellScore) (winner, runnerUp float64) {
	if len(cells) == 1 {
		return 1, 0
	}
	rng := rand.New(rand.NewPCG(pBestSeed, uint64(len(cells))))
	post := func(c *CellScore) [2]float64 {
		clean := float64(c.Passed - c.Warned)
		return [2]float64{1 + clean + float64(c.Warned)/2, 1 + float64(c.Counted-c.Passed) + float64(c.Warned)/2}
	}
	type group struct {
		ab [2]float64
		k  float64
	}
	var others []group
	index := map[[2]float64]int{}
	for _, c := range cells[2:] {
		ab := post(c)
		i, ok := index[ab]
		if !ok {
			i = len(others)
			index[ab] = i
			others = append(others, group{ab: ab})
		}
		others[i].k++
	}
	// The most likely to beat the two first: the loop below stops early.
	slices.SortFunc(others, func(a, b group) int {
		return cmp.Compare(b.ab[0]/(b.ab[0]+b.ab[1]), a.ab[0]/(a.ab[0]+a.ab[1]))
	})
	a0, a1 := post(cells[0]), post(cells[1])
	var wins [2]int
	for range pBestSamples {
		p0, p1 := SampleBeta(rng, a0[0], a0[1]), SampleBeta(rng, a1[0], a1[1])
		t := max(p0, p1)
		beaten := false
		for _, g := range others {
			if rng.Float64() >= math.Pow(betaCDF(t, g.ab[0], g.ab[1]), g.k) {
				beaten = true
				break
			}
		}
		switch {
		case beaten:
		case p0 >= p1:
			wins[0]++
		default:
			wins[1]++
		}
	}
	return float64(wins[0]) / pBestSamples, float64(wins[1]) / pBestSamples
}

// betaCDF is the regularized incomplete beta function I_x(a, b), by the
// continued fraction of Numerical Recipes (betacf, modified Lentz).
func betaCDF(x, a, b float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	lbeta := func(a, b float64) float64 {
		la, _ := math.Lgamma(a)
		lb, _ := math.Lgamma(b)
		lab, _ := math.Lgamma(a + b)
		return la + lb - lab
	}
	front := math.Exp(a*math.Log(x) + b*math.Log1p(-x) - lbeta(a, b))
	if x < (a+1)/(a+b+2) {
		return front * betaCF(x, a, b) / a
	}
	return 1 - front*betaCF(1-x, b, a)/b
}

func betaCF(x, a, b float64) float64 {
	const tiny, eps = 1e-300, 1e-14
	c, d := 1.0, 1-(a+b)*x/(a+1)
	if math.Abs(d) < tiny {
		d = tiny
	}
	d = 1 / d
	h := d
	for m := 1.0; m <= 300; m++ {
		m2 := 2 * m
		aa := m * (b - m) * x / ((a + m2 - 1) * (a + m2))
		d, c = 1+aa*d, 1+aa/c
		d, c = 1/nonzero(d, tiny), nonzero(c, tiny)
		h *= d * c
		aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
		d, c = 1+aa*d, 1+aa/c
		d, c = 1/nonzero(d, tiny), nonzero(c, tiny)
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return h
}

func nonzero(v, tiny float64) float64 {
	if math.Abs(v) < tiny {
		return tiny
	}
	return v
}

// SampleBeta draws from Beta(a, b), a, b > 0, as X/(X+Y) of two Gamma draws.
func SampleBeta(rng *rand.Rand, a, b float64) float64 {
	x := sampleGamma(rng, a)
	y := sampleGamma(rng, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// sampleGamma draws from Gamma(shape, 1) (Marsaglia and Tsang, 2000; shapes
// under 1 by the boost Gamma(a) = Gamma(a+1) · U^(1/a)).
func sampleGamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		return sampleGamma(rng, shape+1) * math.Pow(rng.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// WilsonUpper is the upper bound of the Wilson score interval (1 when n is 0).
func WilsonUpper(passed, n int) float64 {
	if n <= 0 {
		return 1
	}
	return 1 - WilsonLower(n-passed, n)
}
