package reports

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

// writeBigResults writes a results dir of cells × repeats runs: 25 kernels ×
// 5 drivers × 4 distros × 10 docker versions = 5000 cells.
func writeBigResults(b *testing.B, dir string, repeats int) int {
	b.Helper()
	fh, err := os.Create(filepath.Join(dir, ResultsFile))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	t0 := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	fmt.Fprintf(w, `{"schema":%q,"run_id":"bench","spec":"matrix.yaml","provider":"qemu","started":%q,"runs":[`,
		results.SchemaVersion, t0.Format(time.RFC3339))
	enc := json.NewEncoder(w)
	drivers := []string{"overlay2", "btrfs", "devicemapper", "vfs", "aufs"}
	n := 0
	for k := range 25 {
		for _, drv := range drivers {
			for d := range 4 {
				for v := range 10 {
					kernel := fmt.Sprintf("6.1.%d", 100+k)
					distro, docker := fmt.Sprintf("debian%d", 10+d), fmt.Sprintf("2%d.10.%d", v%3, v)
					cell := fmt.Sprintf("k%s-%s-docker%s-%s", kernel, distro, docker, drv)
					for rep := 1; rep <= repeats; rep++ {
						r := results.Run{Cell: cell, Kernel: kernel, Distro: distro, Docker: docker, Driver: drv,
							Repeat: rep, Attempt: 1, Verdict: results.Pass, Started: t0.Add(time.Duration(n) * time.Second),
							Finished: t0.Add(time.Duration(n)*time.Second + 40*time.Second)}
						h := (k*7 + d*13 + v*3 + rep*11) % 97
						switch {
						case drv == "aufs":
							r.Verdict, r.Reason = results.Unsupported, "kernel has no aufs module"
						case h == 0:
							r.Verdict, r.Reason = results.KernelCrash, "kernel panic"
							r.Findings = []results.Finding{{Source: "console", Category: "kernel-panic", Severity: "fatal",
								Title: fmt.Sprintf("BUG: unable to handle page fault in func%d", k%5), StartLine: 100, EndLine: 104,
								Excerpt: "BUG: unable to handle page fault\nKernel panic - not syncing: Fatal exception"}}
						case h < 4:
							r.Verdict, r.Reason = results.ProbeFailure, "io checksum mismatch"
							r.Findings = []results.Finding{{Source: "probe", Category: "io-verify", Severity: "error", Title: "io: checksum mismatch"}}
						case h < 6:
							r.Verdict, r.Reason = results.InfraError, "qemu died"
						}
						if r.Verdict == results.Pass || r.Verdict == results.ProbeFailure {
							r.Probes = []results.Probe{
								{Name: "io", OK: r.Verdict == results.Pass, Metrics: map[string]float64{"write_mb_per_s": float64(200 + h), "fsync_latency_p99_us": 1000 + float64(h)*100}},
								{Name: "net", OK: true, Metrics: map[string]float64{"stream_mb_per_s": float64(800 + k)}},
								{Name: "churn", OK: true, Metrics: map[string]float64{"container_start_latency_p50_us": float64(300000 + v)}},
							}
						}
						if n > 0 {
							w.WriteString(",")
						}
						if err := enc.Encode(&r); err != nil {
							b.Fatal(err)
						}
						n++
					}
				}
			}
		}
	}
	w.WriteString("]}\n")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		b.Fatal(err)
	}
	return n
}

type countingWriter struct{ n int64 }

// cpuTime is the process's user + system CPU time: on a shared machine the
// benchmark's CPU per op says more than its wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkReport100k loads, ranks and renders the HTML report of 100,000
// cell runs (5000 cells × 20 repeats), and reports the HTML size.
func BenchmarkReport100k(b *testing.B) {
	dir := b.TempDir()
	runs := writeBigResults(b, dir, 20)
	st, _ := os.Stat(filepath.Join(dir, ResultsFile))
	b.ResetTimer()
	var html countingWriter
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		n++
		f, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Build(context.Background(), f, Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		html = countingWriter{}
		if err := r.WriteHTML(&html, HTMLOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(n), "cpu-ms/op")
	b.ReportMetric(float64(html.n)/(1<<20), "html-MiB")
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(float64(st.Size())/(1<<20), "results-MiB")
}

// BenchmarkReportWithHistory100k builds the report of a 20,000-run result
// against a history holding 100,000 stored cell runs (5 past nights), the
// nightly job's shape: trends, regressions and signature dates from SQLite.
func BenchmarkReportWithHistory100k(b *testing.B) {
	benchHistory(b, 4, 5, false)
}

// benchHistoryReport builds and renders the report of f against store.
func benchHistoryReport(b *testing.B, dir string, f *results.File, store *history.Store) {
	b.Helper()
	b.ResetTimer()
	var html countingWriter
	var r *Report
	var err error
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		n++
		r, err = Build(context.Background(), f, Options{Dir: dir, History: store})
		if err != nil {
			b.Fatal(err)
		}
		html = countingWriter{}
		if err := r.WriteHTML(&html, HTMLOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(n), "cpu-ms/op")
	b.ReportMetric(float64(html.n)/(1<<20), "html-MiB")
	b.ReportMetric(float64(r.History.Runs), "past-runs")
}

// BenchmarkReportWithHistoryMonths builds the nightly report of the
// 5000-cell matrix (one repeat) against a history of six months of its
// nightly runs: 180 nights × 5000 cells = 900,000 stored cell runs, and
// trends that must be aggregated per day or week to stay readable.
func BenchmarkReportWithHistoryMonths(b *testing.B) {
	benchHistory(b, 1, 180, true)
}

// benchHistory writes a big result of repeats runs per cell, stores nights
// past nights of it in a history (each run stamped with its night when
// stamp is set) and benchmarks the report against that history.
func benchHistory(b *testing.B, repeats, nights int, stamp bool) {
	dir := b.TempDir()
	writeBigResults(b, dir, repeats)
	f, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	store, err := history.Open(filepath.Join(dir, history.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	stored := 0
	for night := nights; night >= 1; night-- {
		past := *f
		past.RunID = fmt.Sprintf("night-%d", night)
		past.Started = f.Started.Add(-time.Duration(night) * 24 * time.Hour)
		if stamp {
			past.Runs = slices.Clone(f.Runs)
			for i := range past.Runs {
				past.Runs[i].Started = past.Started
			}
		}
		if _, err := store.Append(context.Background(), &past); err != nil {
			b.Fatal(err)
		}
		stored += len(past.Runs)
	}
	benchHistoryReport(b, dir, f, store)
	b.ReportMetric(float64(stored), "stored-runs")
}
