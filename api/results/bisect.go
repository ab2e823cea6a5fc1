package results

// The answer of `matrixctl bisect` (bisect.json in its directory): which
// release along one axis first shows a failure. runner/bisect computes it,
// reports renders it.

// Judgement of one release in a bisection.
type Judgement string

const (
	JudgedGood Judgement = "good"
	JudgedBad  Judgement = "bad"
	// JudgedSkip: the release could not be judged (only infra errors, or
	// another failure than the one bisected for), as git bisect skip.
	JudgedSkip Judgement = "skip"
)

// BisectStep is one judged release: the verdicts of its runs in order.
type BisectStep struct {
	Version   string    `json:"version"`
	Index     int       `json:"index"`
	Verdicts  []Verdict `json:"verdicts"`
	Judgement Judgement `json:"judgement"`
	Why       string    `json:"why"`
}

// BisectResult is where a bisection got to; complete when FirstBad is set.
type BisectResult struct {
	// LastGood and FirstBad are adjacent unless Skipped releases lie
	// between them: then the first bad one is one of Skipped or FirstBad.
	LastGood string   `json:"last_good,omitempty"`
	FirstBad string   `json:"first_bad,omitempty"`
	Skipped  []string `json:"skipped,omitempty"`
	// Bad is the verdict bisected for.
	Bad Verdict `json:"bad_verdict,omitempty"`
	// FailRate is the bad release's measured failure rate, Streak the pass
	// streak a good judgement needed, Confidence what that streak gives.
	FailRate   float64 `json:"fail_rate"`
	Streak     int     `json:"streak"`
	Confidence float64 `json:"confidence"`
	// Steps in the order judged (the bad end, the good end, then the
	// middles); Runs counts every VM-run asked for, infra errors included.
	Steps []BisectStep `json:"steps"`
	Runs  int          `json:"runs"`
	// Boundary is the evidence at the answer, when there is one.
	Boundary *BisectBoundary `json:"boundary,omitempty"`
}

// BisectBoundary is the evidence at the answer: the first bad release's
// first run with the bad verdict, and the last good release's runs.
type BisectBoundary struct {
	Bad  BisectRun   `json:"bad"`
	Good []BisectRun `json:"good"`
}

// BisectRun is one run of a release, as its results.json records it.
type BisectRun struct {
	Release string  `json:"release"`
	N       int     `json:"n"`
	Dir     string  `json:"dir"` // the run's results directory, relative to the bisection's
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
	// Findings are the run's findings of its highest severity (with their
	// console excerpts).
	Findings []Finding `json:"findings,omitempty"`
}
