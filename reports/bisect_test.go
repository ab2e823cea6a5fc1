package reports

import (
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

// TestWriteBisectHTML: the answer, every step and a link per run; hostile
// text in a reason stays text.
func TestWriteBisectHTML(t *testing.T) {
	p := sampleBisectPage()
	var b strings.Builder
	if err := WriteBisectHTML(&b, p); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{
		`<strong id="first-bad">linux-image-6.1.0-52-amd64</strong>`,
		`<strong id="last-good">linux-image-6.1.0-47-amd64</strong>`,
		`<a href="runs/c/r1">kernel-crash</a>`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`3 steps, 3 VM-runs`,
		`Kernel panic - not syncing: sysrq triggered crash`,
		`&lt;img src=x onerror=alert(2)&gt;`,
		`<a href="runs/b/r1/">results of this run</a>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(html, "<script>") || strings.Contains(html, "<img") {
		t.Error("a reason's markup reached the page")
	}
	b.Reset()
	if err := WriteBisectHTML(&b, &BisectPage{Axis: "kernel", Cell: "c", Error: "the good release is not good"}); err != nil || !strings.Contains(b.String(), "the good release is not good") {
		t.Errorf("page without an answer: %v\n%s", err, b.String())
	}
}

// sampleBisectPage is a finished bisection of three releases, one reason hostile.
func sampleBisectPage() *BisectPage {
	return &BisectPage{
		Axis: "kernel", Cell: "k6.1-debian12-docker20.10.24-overlay2",
		Releases:  []string{"linux-image-6.1.0-47-amd64", "linux-image-6.1.0-52-amd64", "linux-image-6.1.0-57-amd64"},
		TestFault: "sysrq-panic from linux-image-6.1.0-52-amd64",
		Result: &results.BisectResult{
			LastGood: "linux-image-6.1.0-47-amd64", FirstBad: "linux-image-6.1.0-52-amd64", Bad: results.KernelCrash,
			FailRate: 1, Streak: 1, Confidence: 1, Runs: 3,
			Steps: []results.BisectStep{
				{Version: "linux-image-6.1.0-57-amd64", Verdicts: []results.Verdict{results.KernelCrash}, Judgement: results.JudgedBad, Why: "kernel-crash in 1 of 1 counted runs"},
				{Version: "linux-image-6.1.0-47-amd64", Verdicts: []results.Verdict{results.Pass}, Judgement: results.JudgedGood, Why: "<script>alert(1)</script>"},
				{Version: "linux-image-6.1.0-52-amd64", Verdicts: []results.Verdict{results.KernelCrash}, Judgement: results.JudgedBad, Why: "kernel-crash in run 1"},
			},
			Boundary: &results.BisectBoundary{
				Bad: results.BisectRun{Release: "linux-image-6.1.0-52-amd64", N: 1, Dir: "runs/c/r1", Verdict: results.KernelCrash,
					Reason: "kernel panic", Findings: []results.Finding{{Severity: results.SevFatal, Category: "kernel-panic",
						Title: "Kernel panic - not syncing: sysrq triggered crash", Excerpt: "sysrq: Trigger a crash\n<img src=x onerror=alert(2)>"}}},
				Good: []results.BisectRun{{Release: "linux-image-6.1.0-47-amd64", N: 1, Dir: "runs/b/r1", Verdict: results.Pass}},
			},
		},
		RunDirs: [][]string{{"runs/a/r1"}, {"runs/b/r1"}, {"runs/c/r1"}},
	}
}
