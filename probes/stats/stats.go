// Package stats collects latency samples and reports percentiles for the
// probes' metric records.
package stats

import (
	"sort"
	"sync"
	"time"
)

// Latencies is a set of duration samples, safe for concurrent use.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Time runs fn and records how long it took.
func (l *Latencies) Time(fn func() error) error {
	start := time.Now()
	err := fn()
	l.Add(time.Since(start))
	return err
}

// Count is the number of samples.
func (l *Latencies) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Percentile returns the p-th percentile (0 < p <= 100) by nearest rank, or 0 without samples.
func (l *Latencies) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l.d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Into adds "<prefix>_p50_us", "<prefix>_p99_us", "<prefix>_max_us" and "<prefix>_count" to m.
func (l *Latencies) Into(m map[string]float64, prefix string) {
	m[prefix+"_count"] = float64(l.Count())
	m[prefix+"_p50_us"] = float64(l.Percentile(50).Microseconds())
	m[prefix+"_p99_us"] = float64(l.Percentile(99).Microseconds())
	m[prefix+"_max_us"] = float64(l.Percentile(100).Microseconds())
}
