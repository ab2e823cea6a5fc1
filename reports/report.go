package reports

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

// ReportSchema is written to Report.Schema. Removing or renaming a field of
// Report (or of a type it contains) bumps the version.
const ReportSchema = "matrixctl.report/v1"

// Report is the ranked compatibility report; its JSON form is the versioned
// report schema. Per-run details (used by the HTML and JUnit writers) are
// kept unexported.
type Report struct {
	Schema  string   `json:"schema"`
	Source  Source   `json:"source"`
	Method  []string `json:"method"`
	Summary Summary  `json:"summary"`
	// Ranking lists the ranked cells, best first.
	Ranking []*CellScore `json:"ranking"`
	// NotRun lists the cells without a counted run: unsupported and
	// inconclusive (infra-error only) cells and, when results.json has a
	// plan, the planned cells that never ran (interrupted, or a budget's)
	// and the cells the run left out (filtered, other shard), each with its
	// reason, ordered by notRunOrder then by cell.
	NotRun []NotRun `json:"not_run"`
	// Incomplete lists ranked cells that miss some of their planned runs.
	Incomplete []NotRun `json:"incomplete,omitempty"`
	// Signatures are findings deduplicated across cells by category + title.
	Signatures []*Signature `json:"signatures"`
	// History is set when a history store was consulted.
	History     *HistoryInfo `json:"history,omitempty"`
	Regressions []Change     `json:"regressions"`
	Fixes       []Change     `json:"fixes"`

	dir    string                   // results directory, for artifacts
	calRef float64                  // median host calibration of the runs (0: none)
	runs   map[string][]results.Run // per cell, sorted by repeat
	cells  map[string]*CellScore    // ranked cells by ID
}

// Source identifies the run the report was built from.
type Source struct {
	RunID    string    `json:"run_id"`
	Spec     string    `json:"spec"`
	SpecHash string    `json:"spec_sha256,omitempty"`
	Host     string    `json:"host,omitempty"`
	Provider string    `json:"provider"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Budget is how an adaptive run (run --budget) spent its runs and why it
	// stopped; each cell's runs are in the ranking.
	Budget *results.Budget `json:"budget,omitempty"`
}

// Summary is the page's first paragraph in numbers.
type Summary struct {
	Cells       int                     `json:"cells"`
	Ranked      int                     `json:"ranked"`
	Runs        int                     `json:"runs"`
	Counted     int                     `json:"counted_runs"`
	Passed      int                     `json:"passed_runs"`
	InfraErrors int                     `json:"infra_error_runs"`
	Verdicts    map[results.Verdict]int `json:"verdicts"`
	// MostStable is the winner of the decision without constraints
	// (Report.Decide): empty when no cell qualifies or the evidence is too
	// little, which Decision says.
	MostStable string `json:"most_stable,omitempty"`
	// Decision is that decision: outcome, confidence, runner-up.
	Decision *Decision `json:"decision"`
	// PerfNoise is the run-to-run noise of the performance figures, and
	// whether it could be measured (repeats of some cell).
	PerfNoise PerfNoise `json:"perf_noise"`
	// NeverUse lists broken and failing cells with the reason.
	NeverUse []Avoid `json:"never_use"`
	// Plan compares the run's plan with its runs: runs planned, ran, not
	// run (nil for results.json without a plan).
	Plan *PlanCounts `json:"plan,omitempty"`
}

// Avoid is a cell not to use, and why.
type Avoid struct {
	Cell   string          `json:"cell"`
	Class  Class           `json:"class"`
	Worst  results.Verdict `json:"worst_verdict"`
	Reason string          `json:"reason"`
	// Confidence says how sure the verdict is: a crash is a proof; a
	// failing cell's pass rate has a 95 % upper bound.
	Confidence string `json:"confidence"`
}

// CellScore is one ranked cell.
type CellScore struct {
	Rank   int    `json:"rank"`
	Cell   string `json:"cell"`
	Kernel string `json:"kernel"`
	Distro string `json:"distro"`
	Docker string `json:"docker"`
	Driver string `json:"driver"`
	// Cgroup is the cgroup version the cell's guests ran ("v1", "v2"), from
	// their host evidence, or the cell's cgroup setting when no run says.
	Cgroup string `json:"cgroup,omitempty"`
	// Init is what ran as PID 1 ("systemd", "agent"), from the runs' host
	// evidence or the cell ID; Scratch the scratch filesystem when the cell
	// ID names one ("default" otherwise).
	Init    string          `json:"init,omitempty"`
	Scratch string          `json:"scratch,omitempty"`
	Class   Class           `json:"class"`
	Worst   results.Verdict `json:"worst_verdict"`
	Runs    int             `json:"runs"`
	Counted int             `json:"counted_runs"`
	Passed  int             `json:"passed_runs"`
	// Warned counts the passed runs whose kernel printed warnings
	// (results.KernelWarning): passes, but not clean ones.
	Warned int `json:"warned_runs"`
	// Warnings are the distinct titles of those kernel warnings (hostile
	// text, cleaned; at most maxWarnings).
	Warnings    []string `json:"warnings,omitempty"`
	InfraErrors int      `json:"infra_error_runs"`
	PassRate    float64  `json:"pass_rate"`
	WilsonLower float64  `json:"wilson_lower"`
	PerfScore   float64  `json:"perf_score"`
	HasPerf     bool     `json:"has_perf"`
	// Normalised: the figures were scaled by the host calibration measured
	// beside their runs (results.Run.Calibration).
	Normalised bool `json:"normalised,omitempty"`
	// PerfGroup is the cell's performance tie group, 1 the best: cells
	// whose scores differ by less than the measured noise share a group
	// (0: no figures, or noise not measured, so performance ranks nothing).
	PerfGroup int `json:"perf_group"`
	// Metrics are the medians of each probe metric ("probe.metric").
	Metrics  map[string]float64      `json:"metrics,omitempty"`
	samples  map[string][]float64    // per metric, every OK run's figure
	Verdicts map[results.Verdict]int `json:"verdicts"`
	// Reason explains the worst outcome (empty for stable cells).
	Reason     string   `json:"reason,omitempty"`
	Signatures []string `json:"signatures,omitempty"`
	// Trend is the cell's past runs from history, oldest first, ending with this run.
	Trend []TrendPoint `json:"trend,omitempty"`
	// Change is "regression" or "fix" against the previous conclusive run.
	Change string `json:"change,omitempty"`
}

// NotRun is a cell that was not ranked, and why.
type NotRun struct {
	Cell   string `json:"cell"`
	Kernel string `json:"kernel"`
	Distro string `json:"distro"`
	Docker string `json:"docker"`
	Driver string `json:"driver"`
	Cgroup string `json:"cgroup,omitempty"` // as CellScore.Cgroup
	Class  Class  `json:"class"`
	Runs   int    `json:"runs"`
	// Missing is the number of planned runs that never ran.
	Missing int    `json:"missing_runs,omitempty"`
	Reason  string `json:"reason"`
}

// Signature is one finding deduplicated across cells.
type Signature struct {
	ID        string           `json:"id"`
	Title     string           `json:"title"`
	Category  string           `json:"category"`
	Severity  results.Severity `json:"severity"`
	Source    string           `json:"source"`
	Cells     []string         `json:"cells"`
	Runs      int              `json:"runs"`
	FirstSeen time.Time        `json:"first_seen"`
	LastSeen  time.Time        `json:"last_seen"`
}

// TrendPoint is a cell's outcome in one past (or the current) run.
type TrendPoint struct {
	RunID   string          `json:"run_id"`
	Started time.Time       `json:"started"`
	Counted int             `json:"counted_runs"`
	Passed  int             `json:"passed_runs"`
	Worst   results.Verdict `json:"worst_verdict,omitempty"`
	// Runs is set when the point aggregates a day or a week of runs
	// (HistoryInfo.Bucket): how many; RunID is then empty and Started the
	// bucket's start.
	Runs int `json:"runs,omitempty"`
}

// maxTrend is the length of a cell's trend, this run included.
const maxTrend = 20

// Pass reports whether every counted run passed (false with none counted).
func (p TrendPoint) Pass() bool { return p.Counted > 0 && p.Passed == p.Counted }

// HistoryInfo says which history the trends come from.
type HistoryInfo struct {
	Since time.Time `json:"since,omitzero"`
	Runs  int       `json:"past_runs"`
	// Bucket is what one past trend point stands for: "run", or "day" or
	// "week" when the history holds more runs than a trend has points.
	Bucket string `json:"trend_bucket,omitempty"`
}

// Change is a regression (passed before, fails now) or a fix.
type Change struct {
	Cell      string          `json:"cell"`
	Kind      string          `json:"kind"`
	Worst     results.Verdict `json:"worst_verdict"`
	BeforeRun string          `json:"before_run_id"`
	Before    time.Time       `json:"before_started"`
}

// History is what Build needs from a history store (history.Store has it).
type History interface {
	Trends(ctx context.Context, q history.TrendQuery) (*history.Trends, error)
	Signatures(ctx context.Context, since time.Time) ([]history.SignatureSeen, error)
}

// Options configure Build.
type Options struct {
	// Dir is the results directory; artifacts are read relative to it.
	Dir string
	// History, when set, supplies trends, regressions and first-seen dates.
	History History
	// Since limits the history consulted (zero: all of it).
	Since time.Time
}

// Method returns the scoring method in prose, shown in every report.
func Method() []string {
	return []string{
		"Runs with verdict infra-error (the harness or host failed) or unsupported never count for or against a cell.",
		"A cell is broken when any counted run ended in kernel-crash, data-loss, fs-corruption or hang, or carried a fatal finding; " +
			"failing when no counted run passed; flaky when some passed; stable when all passed.",
		"Kernel warnings count: a pass whose kernel printed a WARNING, a lockdep, kmemleak or OOM-kill report " +
			"(console findings of warning or error severity that decide no verdict) is a pass with kernel warnings; " +
			"a cell whose runs all passed but some with warnings is \"warned\", below stable and above flaky.",
		"Ranking: broken cells last (worse verdict lower, in the order kernel-crash, data-loss, fs-corruption, hang); " +
			"then the Wilson lower bound (95 %) of the pass rate, so 19/20 (0.76) outranks 1/1 (0.21); " +
			"then the class (stable, warned, flaky, failing), so with the same evidence a clean cell outranks one whose kernel warned; " +
			"then the performance tie group; then the number of passes.",
		"Performance score: the median over the cell's runs of each headline probe figure (IO write throughput, " +
			"IO write and fsync latency p99, network stream throughput and echo latency p99, container start latency p50) " +
			"is normalised against the best cell (throughput: higher is better, latency: lower is better) and averaged " +
			"over every headline figure in the report; a missing figure counts as 0, and cells without figures rank " +
			"after cells with them. Performance ranks only beyond its noise: the run-to-run noise is measured from repeats " +
			"(twice the median coefficient of variation of each figure), scores closer than it are ties, and with no " +
			"repeats (noise unknown) performance ranks nothing.",
		"Regressions: a cell whose previous conclusive run in the history passed and that fails now; fixes: the reverse. " +
			"A trend only holds runs of the same provider: a Vagrant box or the local host is another host than a QEMU VM of the same cell.",
	}
}

// Build scores and ranks f. It fails only when the history cannot be read.
func Build(ctx context.Context, f *results.File, opts Options) (*Report, error) {
	r := &Report{
		Schema: ReportSchema,
		Source: Source{RunID: f.RunID, Spec: f.Spec, SpecHash: f.SpecHash, Host: f.Host,
			Provider: f.Provider, Started: f.Started, Finished: f.Finished, Budget: f.Budget},
		Method:      Method(),
		dir:         opts.Dir,
		runs:        map[string][]results.Run{},
		cells:       map[string]*CellScore{},
		Ranking:     []*CellScore{},
		NotRun:      []NotRun{},
		Signatures:  []*Signature{},
		Regressions: []Change{},
		Fixes:       []Change{},
	}
	r.Summary.Verdicts = map[results.Verdict]int{}
	r.Summary.NeverUse = []Avoid{}
	for _, run := range f.Runs {
		r.runs[run.Cell] = append(r.runs[run.Cell], run)
	}
	ids := make([]string, 0, len(r.runs))
	for id, runs := range r.runs {
		ids = append(ids, id)
		slices.SortStableFunc(runs, func(a, b results.Run) int {
			return cmp.Or(cmp.Compare(a.Repeat, b.Repeat), cmp.Compare(a.Attempt, b.Attempt))
		})
	}
	slices.Sort(ids)
	r.calRef = calibrationRef(f.Runs)
	sigs := map[string]*Signature{}
	for _, id := range ids {
		r.addCell(id, r.runs[id], sigs)
	}
	r.applyPlan(f)
	r.Summary.PerfNoise = scorePerformance(r.Ranking, round4(r.calRef))
	slices.SortFunc(r.Ranking, rankLess)
	for i, c := range r.Ranking {
		c.Rank = i + 1
	}
	r.summarise()
	for _, s := range sigs {
		slices.Sort(s.Cells)
		s.Cells = slices.Compact(s.Cells)
		r.Signatures = append(r.Signatures, s)
	}
	slices.SortFunc(r.Signatures, func(a, b *Signature) int {
		return cmp.Or(cmp.Compare(b.Severity.Rank(), a.Severity.Rank()),
			cmp.Compare(len(b.Cells), len(a.Cells)), cmp.Compare(a.Category, b.Category), cmp.Compare(a.Title, b.Title))
	})
	if opts.History != nil {
		if err := r.applyHistory(ctx, opts.History, opts.Since); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// cgroupOf is the cgroup version a cell's runs report ("v1", "v2"): the
// first run whose guest said, else the first explicit cgroup setting, else
// "" (unknown: e.g. never booted under the distro's default).
func cgroupOf(runs []results.Run) string {
	for _, r := range runs {
		if r.Host != nil && r.Host.CgroupVersion != "" {
			return "v" + CleanLine(r.Host.CgroupVersion)
		}
	}
	for _, r := range runs {
		if r.Host != nil && (r.Host.CgroupMode == "v1" || r.Host.CgroupMode == "v2") {
			return r.Host.CgroupMode
		}
	}
	return ""
}

// initOf is what ran as PID 1 in a cell's runs: the first run's host
// evidence, else the cell ID's "-init-<init>" suffix, else systemd (the
// default init, whose cells carry no suffix).
func initOf(id string, runs []results.Run) string {
	for _, r := range runs {
		if r.Host != nil && r.Host.InitMode != "" {
			return CleanLine(r.Host.InitMode)
		}
	}
	if v := idSetting(id, "-init-"); v != "" {
		return v
	}
	return "systemd"
}

// scratchOf is the cell ID's "-scratch-<fs>" suffix, or "default".
func scratchOf(id string) string {
	if v := idSetting(id, "-scratch-"); v != "" {
		return v
	}
	return "default"
}

// idSetting is the word after prefix in a cell ID (matrix.CellID's suffixes).
func idSetting(id, prefix string) string {
	_, after, ok := strings.Cut(id, prefix)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, "-")
	return CleanLine(v)
}

// addCell aggregates the runs of one cell.
func (r *Report) addCell(id string, runs []results.Run, sigs map[string]*Signature) {
	first := runs[0]
	c := &CellScore{Cell: id, Kernel: first.Kernel, Distro: first.Distro, Docker: first.Docker,
		Driver: first.Driver, Cgroup: cgroupOf(runs), Init: initOf(id, runs), Scratch: scratchOf(id), Runs: len(runs), Worst: results.Pass, Verdicts: map[results.Verdict]int{}}
	fatal := false
	var fatalTitle string
	samples := map[string][]float64{}
	var worstRun *results.Run
	for i := range runs {
		run := &runs[i]
		c.Verdicts[run.Verdict]++
		r.Summary.Verdicts[run.Verdict]++
		r.Summary.Runs++
		if run.Verdict == results.InfraError {
			c.InfraErrors++
		}
		if !countedVerdict(run.Verdict) {
			continue
		}
		c.Counted++
		if run.Verdict == results.Pass {
			c.Passed++
			c.addWarnings(run.KernelWarnings())
		}
		if severityIndex(run.Verdict) < severityIndex(c.Worst) || worstRun == nil && run.Verdict != results.Pass {
			c.Worst = run.Verdict
			worstRun = run
		}
		for _, fd := range run.Findings {
			if fd.Severity == results.SevFatal && !fatal {
				fatal, fatalTitle = true, fd.Title
			}
			key := string(fd.Category) + "\x00" + signatureKey(fd.Title)
			s, ok := sigs[key]
			if !ok {
				sum := sha256.Sum256([]byte(key))
				s = &Signature{ID: "sig-" + hex.EncodeToString(sum[:5]), Title: trimTitle(fd.Title), Category: CleanLine(string(fd.Category)),
					Severity: fd.Severity, Source: CleanLine(fd.Source), FirstSeen: run.Started, LastSeen: run.Started}
				sigs[key] = s
			}
			if fd.Severity.Rank() > s.Severity.Rank() {
				s.Severity = fd.Severity
			}
			s.Cells = append(s.Cells, id)
			s.Runs++
			if run.Started.Before(s.FirstSeen) {
				s.FirstSeen = run.Started
			}
			if run.Started.After(s.LastSeen) {
				s.LastSeen = run.Started
			}
			if !slices.Contains(c.Signatures, s.ID) {
				c.Signatures = append(c.Signatures, s.ID)
			}
		}
		for _, p := range run.Probes {
			if !p.OK {
				continue
			}
			for k, v := range p.Metrics {
				v, scaled := r.normalise(p.Name+"."+k, v, run.Calibration)
				c.Normalised = c.Normalised || scaled
				samples[p.Name+"."+k] = append(samples[p.Name+"."+k], v)
			}
		}
	}
	if c.Counted == 0 {
		nr := NotRun{Cell: id, Kernel: c.Kernel, Distro: c.Distro, Docker: c.Docker, Driver: c.Driver, Cgroup: c.Cgroup, Runs: c.Runs,
			Class: ClassInconclusive}
		if c.Verdicts[results.Unsupported] > 0 {
			nr.Class = ClassUnsupported
		}
		for _, run := range runs {
			if run.Reason != "" {
				nr.Reason = CleanLine(run.Reason)
				break
			}
		}
		if nr.Reason == "" {
			nr.Reason = "no reason recorded"
		}
		r.NotRun = append(r.NotRun, nr)
		return
	}
	switch {
	case brokenVerdict(c.Worst) || fatal:
		c.Class = ClassBroken
	case c.Passed == 0:
		c.Class = ClassFailing
	case c.Passed < c.Counted:
		c.Class = ClassFlaky
	case c.Warned > 0:
		c.Class = ClassWarned
	default:
		c.Class = ClassStable
	}
	c.PassRate = round4(float64(c.Passed) / float64(c.Counted))
	c.WilsonLower = round4(WilsonLower(c.Passed, c.Counted))
	if len(samples) > 0 {
		c.Metrics = map[string]float64{}
		c.samples = samples
		for k, vs := range samples {
			c.Metrics[k] = median(slices.Clone(vs))
		}
	}
	if worstRun != nil {
		c.Reason = describe(c, worstRun)
	} else if fatal {
		c.Reason = CleanLine("fatal finding: " + fatalTitle)
	}
	r.Ranking = append(r.Ranking, c)
	r.cells[id] = c
}

// maxWarnings caps the kernel warning titles kept per cell.
const maxWarnings = 10

// addWarnings records one passed run's kernel warnings.
func (c *CellScore) addWarnings(ws []results.Finding) {
	if len(ws) == 0 {
		return
	}
	c.Warned++
	for _, w := range ws {
		t := trimTitle(w.Title)
		if t == "" {
			t = CleanLine(string(w.Category))
		}
		if len(c.Warnings) < maxWarnings && !slices.Contains(c.Warnings, t) {
			c.Warnings = append(c.Warnings, t)
		}
	}
}

// calibrationRef is the median host calibration over the runs that have one.
func calibrationRef(runs []results.Run) float64 {
	var cs []float64
	for _, r := range runs {
		if r.Calibration != nil && r.Calibration.CPUMiBps > 0 && !math.IsInf(r.Calibration.CPUMiBps, 0) {
			cs = append(cs, r.Calibration.CPUMiBps)
		}
	}
	if len(cs) == 0 {
		return 0
	}
	return median(cs)
}

// normalise scales a figure measured on a host that gave cal of CPU to
// the report's reference host (calRef): a throughput measured on a host
// half as free is doubled, a latency halved. Figures without a direction
// or without a calibration are left alone.
func (r *Report) normalise(key string, v float64, cal *results.Calibration) (float64, bool) {
	if r.calRef <= 0 || cal == nil || cal.CPUMiBps <= 0 || math.IsInf(cal.CPUMiBps, 0) {
		return v, false
	}
	dir := headlineDirection(key)
	if dir == 0 {
		dir = metricDirection(key)
	}
	factor := r.calRef / cal.CPUMiBps
	switch {
	case dir > 0:
		return v * factor, true
	case dir < 0:
		return v / factor, true
	}
	return v, false
}

// describe says why a cell is not stable, from its worst run.
func describe(c *CellScore, worst *results.Run) string {
	why := worst.Reason
	for _, fd := range worst.Findings {
		if fd.Title != "" {
			why = fd.Title
			break
		}
	}
	s := fmt.Sprintf("%s in %d of %d runs", c.Worst, c.Verdicts[c.Worst], c.Counted)
	if why != "" {
		s += ": " + why
	}
	const maxReason = 240 // the full text is in the drill-down
	return shorten(CleanLine(s), maxReason)
}

func round4(v float64) float64 { return float64(int64(v*10000+0.5)) / 10000 }

func (r *Report) summarise() {
	s := &r.Summary
	s.Cells = len(r.runs)
	s.Ranked = len(r.Ranking)
	for _, c := range r.Ranking {
		s.Counted += c.Counted
		s.Passed += c.Passed
		s.InfraErrors += c.InfraErrors
		if c.Class == ClassBroken || c.Class == ClassFailing {
			s.NeverUse = append(s.NeverUse, Avoid{Cell: c.Cell, Class: c.Class, Worst: c.Worst, Reason: c.Reason,
				Confidence: avoidConfidence(c)})
		}
	}
	for _, n := range r.NotRun {
		s.InfraErrors += r.cellVerdicts(n.Cell)[results.InfraError]
	}
	// Worst first.
	slices.SortStableFunc(s.NeverUse, func(a, b Avoid) int {
		return cmp.Or(cmp.Compare(severityIndex(a.Worst), severityIndex(b.Worst)), cmp.Compare(a.Cell, b.Cell))
	})
	s.Decision = r.Decide(nil)
	if s.Decision.Outcome == OutcomeWinner {
		s.MostStable = s.Decision.Winner.Cell
	}
}

// avoidConfidence says how sure "never use c" is.
func avoidConfidence(c *CellScore) string {
	if c.Class == ClassBroken {
		return fmt.Sprintf("certain: one %s is a proof (%d of %d runs)", c.Worst, c.Verdicts[c.Worst], c.Counted)
	}
	s := fmt.Sprintf("pass rate at most %.2f (95 %% upper bound, %d of %d passed)", WilsonUpper(c.Passed, c.Counted),
		c.Passed, c.Counted)
	if c.Counted < 3 {
		s += "; little evidence"
	}
	return s
}

func (r *Report) cellVerdicts(id string) map[results.Verdict]int {
	m := map[results.Verdict]int{}
	for _, run := range r.runs[id] {
		m[run.Verdict]++
	}
	return m
}

// applyHistory adds trends, regressions, fixes and first-seen dates.
func (r *Report) applyHistory(ctx context.Context, h History, since time.Time) error {
	// The trend of a cell stops before this run and never mixes providers:
	// another provider boots another host than this cell's.
	tr, err := h.Trends(ctx, history.TrendQuery{Provider: r.Source.Provider, Since: since, Before: r.Source.Started,
		Exclude: r.Source.RunID, MaxPoints: maxTrend - 1})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	r.History = &HistoryInfo{Since: since, Runs: tr.Runs, Bucket: tr.Bucket}
	for _, c := range r.Ranking {
		now := TrendPoint{RunID: r.Source.RunID, Started: r.Source.Started, Counted: c.Counted, Passed: c.Passed}
		if c.Worst != results.Pass {
			now.Worst = c.Worst
		}
		for _, p := range tr.Trend[c.Cell] {
			tp := TrendPoint{RunID: p.RunID, Started: p.Started, Counted: p.Counted, Passed: p.Passed, Worst: p.Worst}
			if tr.Bucket != "run" {
				tp.Runs = p.Runs
			}
			c.Trend = append(c.Trend, tp)
		}
		c.Trend = append(c.Trend, now)
		// Regressions and fixes compare with the previous conclusive run
		// among the last ones (per run, whatever the trend's buckets).
		pts := tr.Recent[c.Cell]
		var prev *history.Point
		for i := len(pts) - 1; i >= 0; i-- {
			if pts[i].Counted > 0 {
				prev = &pts[i]
				break
			}
		}
		if prev == nil {
			continue
		}
		before := TrendPoint{Counted: prev.Counted, Passed: prev.Passed}
		ch := Change{Cell: c.Cell, Worst: c.Worst, BeforeRun: prev.RunID, Before: prev.Started}
		switch {
		case before.Pass() && !now.Pass():
			c.Change, ch.Kind = "regression", "regression"
			r.Regressions = append(r.Regressions, ch)
		case !before.Pass() && now.Pass():
			c.Change, ch.Kind = "fix", "fix"
			r.Fixes = append(r.Fixes, ch)
		}
	}
	seen, err := h.Signatures(ctx, since)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	byKey := map[string]history.SignatureSeen{}
	for _, s := range seen {
		k := CleanLine(s.Category) + "\x00" + signatureKey(trimTitle(s.Title))
		if old, ok := byKey[k]; ok { // titles that differ only in numbers
			if old.FirstSeen.Before(s.FirstSeen) {
				s.FirstSeen = old.FirstSeen
			}
			if old.LastSeen.After(s.LastSeen) {
				s.LastSeen = old.LastSeen
			}
		}
		byKey[k] = s
	}
	for _, s := range r.Signatures {
		if h, ok := byKey[s.Category+"\x00"+signatureKey(s.Title)]; ok {
			if !h.FirstSeen.IsZero() && h.FirstSeen.Before(s.FirstSeen) {
				s.FirstSeen = h.FirstSeen
			}
			if h.LastSeen.After(s.LastSeen) {
				s.LastSeen = h.LastSeen
			}
		}
	}
	return nil
}

// Failures counts counted runs that did not pass.
func (r *Report) Failures() int { return r.Summary.Counted - r.Summary.Passed }

// trimTitle keeps titles to one clean line.
func trimTitle(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return CleanLine(s)
}

func sortStrings(s []string) { slices.Sort(s) }

// signatureKey normalises a finding title for deduplication: numbers,
// hex addresses and timestamps differ between occurrences of one problem
// (syzkaller normalises titles the same way), so digit runs become "N".
func signatureKey(title string) string {
	title, _, _ = strings.Cut(title, "\n")
	var b strings.Builder
	inNum := false
	for i := 0; i < len(title); i++ {
		c := title[i]
		isNum := c >= '0' && c <= '9' || inNum && (c >= 'a' && c <= 'f' || c == 'x')
		if isNum {
			if !inNum {
				b.WriteByte('N')
			}
			inNum = true
			continue
		}
		inNum = false
		b.WriteByte(c)
	}
	return b.String()
}
