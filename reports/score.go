package reports

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
)

// Scoring and ranking.
//
// A cell (one kernel × distro × docker × driver combination, identified by
// its cell ID) has several runs: its repeats. Runs with verdict infra-error
// (the harness or host failed) and unsupported never count for or against a
// cell. The counted runs decide the cell's stability class:
//
//	broken   some run ended in kernel-crash, data-loss, fs-corruption or hang,
//	         or carried a finding of severity "fatal"
//	failing  no counted run passed (docker-failure / probe-failure only)
//	flaky    some counted runs passed, some failed
//	warned   every counted run passed, some with kernel warnings
//	         (results.KernelWarning: a WARNING, lockdep, kmemleak, OOM kill)
//	stable   every counted run passed cleanly
//
// Cells with only infra-error runs are "inconclusive"; cells with only
// unsupported runs are "unsupported" (with the runner's reason). Neither is
// ranked: the report lists them separately under "not run".
//
// Ranked cells are ordered by these keys, each breaking ties of the previous:
//
//  1. broken cells last; among broken cells the worse worst verdict (in
//     results.VerdictOrder: kernel-crash, data-loss, fs-corruption, hang)
//     ranks lower.
//  2. the Wilson score lower bound (95 %, z = 1.96) of the pass rate over the
//     counted runs, higher first: 19/20 (0.76) outranks 1/1 (0.21).
//  3. the class: stable, warned, flaky, failing. With the same evidence a
//     clean cell outranks one whose kernel printed warnings.
//  4. the performance tie group, better first; cells without any scored
//     metric rank after cells with one (missing figures rank last, not
//     first). Scores within the measured run-to-run noise are ties
//     (scorePerformance); with no repeats the noise is unknown and
//     performance ranks nothing.
//  5. the number of passed runs, more first; then the cell ID.
//
// The performance score uses the probes' metrics. For each metric (probe
// name + "." + metric name) a cell's figure is the median over its counted
// runs whose probe reported OK. The scored metrics are the probes' headline
// figures (headlineMetrics: IO write throughput and write/fsync latency p99,
// network stream throughput and echo latency p99, container start latency
// p50); only when none appears in the report are metrics scored by a
// direction guessed from their names (metricDirection). Other metrics are
// shown but not scored. Each figure is normalised against the best cell (best =
// 1.0), and the score is 100 × the mean over every scored metric seen in
// the report, a missing figure counting as 0.

// Class is the stability class of a cell.
type Class string

// Cell classes, from best to worst; the last two are not ranked.
const (
	ClassStable       Class = "stable"
	ClassWarned       Class = "warned"
	ClassFlaky        Class = "flaky"
	ClassFailing      Class = "failing"
	ClassBroken       Class = "broken"
	ClassInconclusive Class = "inconclusive"
	ClassUnsupported  Class = "unsupported"
)

// wilsonZ is the normal quantile of the 95 % two-sided confidence bound.
const wilsonZ = 1.96

// WilsonLower is the lower bound of the Wilson score interval for passed
// successes out of n trials (0 when n is 0).
func WilsonLower(passed, n int) float64 {
	if n <= 0 {
		return 0
	}
	p := float64(passed) / float64(n)
	nf := float64(n)
	z2 := wilsonZ * wilsonZ
	centre := p + z2/(2*nf)
	margin := wilsonZ * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return math.Max(0, (centre-margin)/(1+z2/nf))
}

// severityIndex is v's position in results.VerdictOrder (0 = worst).
func severityIndex(v results.Verdict) int {
	if i := slices.Index(results.VerdictOrder, v); i >= 0 {
		return i
	}
	return len(results.VerdictOrder)
}

// brokenVerdict reports whether v says the kernel or storage stack is broken.
func brokenVerdict(v results.Verdict) bool {
	return severityIndex(v) <= severityIndex(results.Hang)
}

// countedVerdict reports whether a run with verdict v counts for its cell.
func countedVerdict(v results.Verdict) bool {
	return v != results.InfraError && v != results.Unsupported
}

// headlineMetric is a probe metric the performance score uses, matched by
// the end of its "probe.metric" key.
type headlineMetric struct {
	suffix string
	dir    int // +1: higher is better, -1: lower is better
	what   string
}

// headlineMetrics are the figures of the probes (probes/iowork, probes/network,
// probes/churn) that the performance score uses: IO throughput and latency,
// network throughput and latency, container start latency.
func headlineMetrics() []headlineMetric {
	return []headlineMetric{
		{"write_mb_per_s", +1, "IO write throughput"},
		{"fsync_latency_p99_us", -1, "IO fsync latency p99"},
		{"write_latency_p99_us", -1, "IO write latency p99"},
		{"stream_mb_per_s", +1, "network stream throughput"},
		{"echo_latency_p99_us", -1, "network echo latency p99"},
		{"container_start_latency_p50_us", -1, "container start latency p50"},
	}
}

// headlineDirection returns the direction of key when it is a headline metric.
func headlineDirection(key string) int {
	for _, h := range headlineMetrics() {
		if key == h.suffix || strings.HasSuffix(key, "."+h.suffix) {
			return h.dir
		}
	}
	return 0
}

// metricDirection guesses from a metric's name whether larger is better
// (+1), smaller is better (-1), or it cannot tell (0). It is the fallback
// for reports in which no headline metric appears.
func metricDirection(metric string) int {
	m := strings.ToLower(metric)
	for _, skip := range []string{"_count", "_max_us", "_max_ms", "bytes", "errors", "_ok"} {
		if strings.HasSuffix(m, skip) {
			return 0
		}
	}
	words := []struct {
		word string
		dir  int
	}{{"latency", -1}, {"throughput", +1}, {"bandwidth", +1}}
	for _, w := range words {
		if strings.Contains(m, w.word) {
			return w.dir
		}
	}
	// Rates before plain time units, so "_mib_s" is not read as seconds.
	suffixes := []struct {
		suffix string
		dir    int
	}{
		{"_mbps", +1}, {"_gbps", +1}, {"_bps", +1}, {"_mib_s", +1}, {"_mb_s", +1}, {"_mb_per_s", +1},
		{"_iops", +1}, {"_per_s", +1}, {"_per_sec", +1},
		{"_ms", -1}, {"_us", -1}, {"_ns", -1}, {"_seconds", -1}, {"_sec", -1}, {"_s", -1},
	}
	for _, e := range suffixes {
		if strings.HasSuffix(m, e.suffix) {
			return e.dir
		}
	}
	return 0
}

// rankLess orders ranked cells per the method above.
func rankLess(a, b *CellScore) int {
	if c := cmp.Compare(brokenKey(a), brokenKey(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(b.WilsonLower, a.WilsonLower); c != 0 {
		return c
	}
	if c := cmp.Compare(classTier(a.Class), classTier(b.Class)); c != 0 {
		return c
	}
	if a.HasPerf != b.HasPerf {
		if a.HasPerf {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.PerfGroup, b.PerfGroup); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Passed, a.Passed); c != 0 {
		return c
	}
	return cmp.Compare(a.Cell, b.Cell)
}

// classTier orders the ranked classes, best first.
func classTier(c Class) int {
	if i := slices.Index([]Class{ClassStable, ClassWarned, ClassFlaky, ClassFailing, ClassBroken}, c); i >= 0 {
		return i
	}
	return 5
}

// brokenKey is 0 for a cell that is not broken, larger for worse breakage.
func brokenKey(c *CellScore) int {
	if c.Class != ClassBroken {
		return 0
	}
	return len(results.VerdictOrder) - min(severityIndex(c.Worst), severityIndex(results.Hang))
}

// PerfNoise is the measured run-to-run noise of the performance figures.
type PerfNoise struct {
	// Measured: some cell has two or more runs with figures. Without that
	// no difference can be shown to exceed the noise, and performance
	// ranks nothing.
	Measured bool `json:"measured"`
	// Points is the noise in performance-score points: 100 × the mean over
	// the scored metrics of twice their coefficient of variation.
	Points float64 `json:"points"`
	// Calibration is the reference host calibration (median over the runs,
	// MiB/s of SHA-256 over every core) the figures were scaled to; 0 when
	// no run carried one (figures as measured).
	Calibration float64 `json:"calibration_mib_s,omitempty"`
	// Metrics is each scored metric's relative noise (2 × the median over
	// cells of the coefficient of variation across repeats).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// scorePerformance fills PerfScore from the Metrics' medians, measures
// the noise from the cells' repeats and puts cells whose scores are within
// it into one tie group (PerfGroup).
func scorePerformance(cells []*CellScore, ref float64) PerfNoise {
	direction := metricDirection
	for _, c := range cells {
		for k := range c.Metrics {
			if headlineDirection(k) != 0 {
				direction = headlineDirection
			}
		}
	}
	best := map[string]float64{}
	for _, c := range cells {
		for k, v := range c.Metrics {
			dir := direction(k)
			if dir == 0 || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				continue
			}
			if b, ok := best[k]; !ok || dir > 0 && v > b || dir < 0 && v < b {
				best[k] = v
			}
		}
	}
	if len(best) == 0 {
		return PerfNoise{Calibration: ref}
	}
	for _, c := range cells {
		sum := 0.0
		for k, b := range best {
			v, ok := c.Metrics[k]
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				continue
			}
			c.HasPerf = true
			switch {
			case direction(k) > 0 && b > 0:
				sum += v / b
			case direction(k) < 0 && v > 0:
				sum += b / v
			case direction(k) < 0: // v == 0 == best latency
				sum++
			}
		}
		c.PerfScore = math.Round(100*sum/float64(len(best))*100) / 100
	}
	noise := measureNoise(cells, best)
	noise.Calibration = ref
	if noise.Measured {
		groupByNoise(cells, noise.Points)
	}
	return noise
}

// measureNoise estimates each scored metric's run-to-run noise from the
// cells with repeats: 2 × the median over cells of the coefficient of
// variation of the metric's figures.
func measureNoise(cells []*CellScore, scored map[string]float64) PerfNoise {
	n := PerfNoise{Metrics: map[string]float64{}}
	total := 0.0
	for k := range scored {
		var cvs []float64
		for _, c := range cells {
			vs := c.samples[k]
			if len(vs) < 2 {
				continue
			}
			mean, sq := 0.0, 0.0
			for _, v := range vs {
				mean += v
			}
			mean /= float64(len(vs))
			if mean <= 0 {
				continue
			}
			for _, v := range vs {
				sq += (v - mean) * (v - mean)
			}
			cvs = append(cvs, math.Sqrt(sq/float64(len(vs)-1))/mean)
		}
		if len(cvs) == 0 {
			continue
		}
		rel := 2 * median(cvs)
		n.Metrics[k] = round4(rel)
		total += rel
	}
	if len(n.Metrics) == 0 {
		return PerfNoise{}
	}
	n.Measured = true
	n.Points = math.Round(100*total/float64(len(n.Metrics))*100) / 100
	return n
}

// groupByNoise gives the cells with figures tie groups: sorted by score,
// a new group starts where the gap to the next cell exceeds the noise
// (single linkage), so any two cells in different groups differ by more
// than the noise and no order rests on a smaller difference.
func groupByNoise(cells []*CellScore, noise float64) {
	var withPerf []*CellScore
	for _, c := range cells {
		if c.HasPerf {
			withPerf = append(withPerf, c)
		}
	}
	slices.SortStableFunc(withPerf, func(a, b *CellScore) int { return cmp.Compare(b.PerfScore, a.PerfScore) })
	group := 1
	for i, c := range withPerf {
		if i > 0 && withPerf[i-1].PerfScore-c.PerfScore > noise {
			group++
		}
		c.PerfGroup = group
	}
}

// median of vs (vs is reordered).
func median(vs []float64) float64 {
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}
