package runner

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

func TestPlainProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewPlainProgress(&b)
	p.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	p.Planned(2, 0)
	p.Phase("k6.1-x", 1, 2, PhaseBoot)
	start := time.Now()
	p.Done(results.Run{Cell: "k6.1-x", Repeat: 1, Verdict: results.KernelCrash, Reason: "console: panic\x1b[2J\nsecond line", Started: start, Finished: start.Add(3 * time.Second)})
	p.Close()
	want := "2026-01-02T03:04:05Z plan: 2 runs, 0 already done\n" +
		"2026-01-02T03:04:05Z k6.1-x r1 (attempt 2): boot\n" +
		"2026-01-02T03:04:05Z [1/2] k6.1-x r1: kernel-crash: console: panic [2J second line (3s)\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTTYProgressDrawsAndCloses(t *testing.T) {
	var b bytes.Buffer
	p := NewTTYProgress(&b)
	p.Planned(2, 0)
	p.Phase("cell-a", 1, 1, PhaseBoot)
	p.Phase("cell-a", 1, 1, PhaseProbes)
	p.Phase("cell-b", 1, 1, PhasePrepare)
	time.Sleep(300 * time.Millisecond)
	p.Done(results.Run{Cell: "cell-a", Repeat: 1, Verdict: results.Pass, Reason: "every probe passed"})
	p.Close()
	if !strings.Contains(b.String(), "cell-a") || !strings.Contains(b.String(), "pass") {
		t.Fatalf("output: %q", b.String())
	}
}
