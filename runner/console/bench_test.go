package console

import (
	"bytes"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/runner/console/internal/baseline"
)

// corpusBytes concatenates the raw logs of one group (or of all but one when exclude is set).
func corpusBytes(b *testing.B, group string, exclude bool) []byte {
	b.Helper()
	var buf bytes.Buffer
	for _, cf := range loadCorpus(b) {
		if (cf.group == group) != exclude {
			buf.Write(cf.raw)
		}
	}
	return buf.Bytes()
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchScan feeds data in 32 KiB writes (the runner's tee) to a fresh scanner
// per iteration. Besides the wall-clock MB/s of b.SetBytes it reports MB per
// CPU second ("MB/cpu-s"), which is what the reference figures for syzkaller's
// pkg/report are (the machine is shared, so wall time is noisier).
func benchScan(b *testing.B, data []byte, scanner func() io.WriteCloser) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for range b.N {
		s := scanner()
		for i := 0; i < len(data); i += 32 << 10 {
			_, _ = s.Write(data[i:min(len(data), i+32<<10)])
		}
		_ = s.Close()
	}
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	if cpu > 0 {
		b.ReportMetric(float64(len(data))*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// newScanner and baselineScanner adapt both scanners to one shape.
type newScanner struct{ *Scanner }

func (s newScanner) Close() error { s.Scanner.Close(); return nil }

type baselineScanner struct{ *baseline.Scanner }

func (s baselineScanner) Close() error { s.Scanner.Close(); return nil }

// BenchmarkScan runs the scanner ("new") and a frozen copy of the scanner
// before issue 16 ("baseline", package internal/baseline) on the same inputs
// in the same run:
//   - clean: a 64 MiB clean console built from the clean corpus (boots,
//     dockerd's and docker's own lines), the common case of a nightly run;
//   - crash: about 4 MiB of the crash corpus (every report kind).
//
// CONSOLE_BENCH_CLEAN=<file> takes the clean log's lines from that file
// instead (a real nightly console, say). Compare MB/s and MB/cpu-s of new
// against baseline per input.
func BenchmarkScan(b *testing.B) {
	clean := corpusBytes(b, "clean", false)
	if p := os.Getenv("CONSOLE_BENCH_CLEAN"); p != "" {
		var err error
		if clean, err = os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
	}
	crash := corpusBytes(b, "clean", true)
	inputs := []struct {
		name string
		data []byte
	}{
		{"clean", bytes.Repeat(clean, (64<<20)/len(clean)+1)},
		{"crash", bytes.Repeat(crash, (4<<20)/len(crash)+1)},
	}
	scanners := []struct {
		name string
		new  func() io.WriteCloser
	}{
		{"new", func() io.WriteCloser { return newScanner{NewScanner(Options{})} }},
		{"baseline", func() io.WriteCloser { return baselineScanner{baseline.NewScanner(baseline.Options{})} }},
	}
	for _, in := range inputs {
		for _, sc := range scanners {
			b.Run(in.name+"/"+sc.name, func(b *testing.B) { benchScan(b, in.data, sc.new) })
		}
	}
}
