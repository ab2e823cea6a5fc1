package reports

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/matrixctl/matrixctl/api/results"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func loadBasic(t testing.TB) *Report {
	t.Helper()
	f, err := Load("testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), f, Options{Dir: "testdata/basic"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWilsonLower(t *testing.T) {
	if a, b := WilsonLower(1, 1), WilsonLower(19, 20); a >= b {
		t.Errorf("1/1 = %.3f must rank below 19/20 = %.3f", a, b)
	}
	if a, b := WilsonLower(3, 3), WilsonLower(30, 30); a >= b {
		t.Errorf("3/3 = %.3f must rank below 30/30 = %.3f", a, b)
	}
	if got := WilsonLower(0, 0); got != 0 {
		t.Errorf("0/0 = %v, want 0", got)
	}
	if got := WilsonLower(0, 5); got != 0 {
		t.Errorf("0/5 = %v, want 0", got)
	}
}

func TestRankingOfFixture(t *testing.T) {
	r := loadBasic(t)
	var order []string
	for _, c := range r.Ranking {
		order = append(order, c.Cell)
	}
	want := []string{
		"k6.12-debian13-docker26.1.5-overlay2",      // 19/20 flaky beats every short stable run
		"k6.1-debian12-docker20.10.24-overlay2",     // 3/3
		"k6.1-debian12-docker26.1.5-overlay2",       // 2/2 + 1 infra error that does not count
		"k6.1-debian12-docker20.10.24-btrfs",        // 1/1, fastest, still below 2/2
		"k6.12-debian13-docker20.10.24-overlay2",    // failing, not broken
		"k6.1-debian12-docker20.10.24-devicemapper", // broken: fs-corruption
		"k5.10-debian11-docker20.10.5-overlay2",     // broken: kernel-crash is worst
	}
	if !slices.Equal(order, want) {
		t.Errorf("ranking:\n got %q\nwant %q", order, want)
	}
	i := r.cells["k6.1-debian12-docker26.1.5-overlay2"]
	if i.Counted != 2 || i.Passed != 2 || i.InfraErrors != 1 || i.Class != ClassWarned {
		t.Errorf("infra error counted against a cell (or its kernel warning lost): %+v", i)
	}
	if r.Summary.MostStable != want[0] {
		t.Errorf("most stable = %q", r.Summary.MostStable)
	}
	var notRun []string
	for _, n := range r.NotRun {
		notRun = append(notRun, string(n.Class)+":"+n.Cell)
		if n.Reason == "" {
			t.Errorf("%s has no reason", n.Cell)
		}
	}
	if want := []string{"unsupported:k6.1-debian12-docker20.10.24-aufs", "inconclusive:k6.12-debian13-docker26.1.5-btrfs"}; !slices.Equal(notRun, want) {
		t.Errorf("not run = %q, want %q", notRun, want)
	}
	if len(r.Summary.NeverUse) != 3 || r.Summary.NeverUse[0].Worst != results.KernelCrash {
		t.Errorf("never use = %+v", r.Summary.NeverUse)
	}
}

func TestMissingMetricsRankLast(t *testing.T) {
	run := func(cell string, probes []results.Probe) results.Run {
		return results.Run{Cell: cell, Kernel: "6.1", Distro: "d", Docker: "1", Driver: cell, Repeat: 1,
			Verdict: results.Pass, Probes: probes}
	}
	f := &results.File{Schema: results.SchemaVersion, RunID: "x", Runs: []results.Run{
		run("a-no-metrics", nil),
		run("b-slow", []results.Probe{{Name: "io", OK: true, Metrics: map[string]float64{"write_mbps": 10, "fsync_latency_ms": 9}}}),
		run("b-slow", []results.Probe{{Name: "io", OK: true, Metrics: map[string]float64{"write_mbps": 10.2, "fsync_latency_ms": 9.1}}}),
		run("c-fast", []results.Probe{{Name: "io", OK: true, Metrics: map[string]float64{"write_mbps": 100, "fsync_latency_ms": 1}}}),
		run("c-fast", []results.Probe{{Name: "io", OK: true, Metrics: map[string]float64{"write_mbps": 101, "fsync_latency_ms": 1}}}),
		run("d-failed-probe", []results.Probe{{Name: "io", OK: false, Metrics: map[string]float64{"write_mbps": 1000}}}),
	}}
	r, err := Build(context.Background(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range r.Ranking {
		got = append(got, c.Cell)
	}
	if want := []string{"c-fast", "b-slow", "a-no-metrics", "d-failed-probe"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if c := r.cells["c-fast"]; c.PerfScore != 100 || c.PerfGroup != 1 || r.cells["b-slow"].PerfGroup != 2 {
		t.Errorf("best cell perf = %v, want 100", c.PerfScore)
	}
}

func TestHeadlineMetricsWin(t *testing.T) {
	cell := func(m map[string]float64) *CellScore { return &CellScore{Metrics: m} }
	a := cell(map[string]float64{"io.write_mb_per_s": 100, "io.write_latency_count": 1})
	b := cell(map[string]float64{"io.write_mb_per_s": 50, "io.write_latency_count": 1e9})
	scorePerformance([]*CellScore{a, b}, 0)
	if a.PerfScore != 100 || b.PerfScore != 50 {
		t.Errorf("scores %v %v: only headline metrics count when present", a.PerfScore, b.PerfScore)
	}
}

func TestMetricDirection(t *testing.T) {
	for name, want := range map[string]int{
		"io.write_mbps": 1, "io.read_mib_s": 1, "io.fsync_latency_ms": -1, "net.throughput_mbps": 1,
		"churn.container_start_ms": -1, "io.iops": 0, "io.rand_iops": 1, "churn.containers": 0, "net.rtt_us": -1,
		"io.write_latency_count": 0, "io.write_mb_per_s": 1, "io.bytes_written": 0, "net.conns_ok": 0,
	} {
		if got := metricDirection(name); got != want {
			t.Errorf("metricDirection(%q) = %d, want %d", name, got, want)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./reports -run Golden -update to accept):\n%s", name, firstDiff(want, got))
	}
}

func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n want " + w + "\n  got " + g
		}
	}
	return ""
}

func TestGoldenJSON(t *testing.T) {
	var b bytes.Buffer
	if err := loadBasic(t).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "basic.json", b.Bytes())
}

func TestGoldenJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := loadBasic(t).WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "basic.junit.xml", b.Bytes())
	for _, want := range []string{`tests="37"`, `failures="5"`, `errors="3"`, `skipped="1"`, "&lt;script&gt;"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("junit lacks %s", want)
		}
	}
	if strings.ContainsRune(b.String(), 0x1b) {
		t.Error("junit contains a raw ESC")
	}
}

func TestGoldenMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := loadBasic(t).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "basic.md", b.Bytes())
}

// TestEveryTemplateExecutes runs each embedded template against a populated
// value of its view type, and fails when a template has no entry here.
func TestEveryTemplateExecutes(t *testing.T) {
	r := loadBasic(t)
	view, err := r.htmlView(HTMLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var crash runView
	for c := range view.Cells {
		for _, rv := range c.Runs {
			if rv.Verdict == results.KernelCrash {
				crash = rv
			}
		}
	}
	if len(crash.Findings) == 0 || len(crash.Findings[0].Lines) == 0 || len(view.Facets) == 0 || len(view.Sigs) == 0 {
		t.Fatalf("view not populated: crash %+v, %d facets, %d sigs", crash, len(view.Facets), len(view.Sigs))
	}
	data := map[string]any{
		"report.html.tmpl": view, "summary": view, "heatmap": view, "ranking": view,
		"signatures": view, "cells": view, "run": crash,
		"warnings": r.cells["k6.1-debian12-docker26.1.5-overlay2"],
	}
	if data["bisect-page"], err = bisectView(sampleBisectPage()); err != nil {
		t.Fatal(err)
	}
	data["bisect-run"] = sampleBisectPage().Result.Boundary.Bad
	// Files that only hold {{define}} blocks render nothing themselves.
	for _, file := range []string{"summary.tmpl", "heatmap.tmpl", "ranking.tmpl", "signatures.tmpl", "cells.tmpl", "bisect.tmpl"} {
		data[file] = nil
	}
	tmpl, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tmpl.Templates() {
		name := tt.Name()
		if name == "" || tt.Tree == nil {
			continue
		}
		v, ok := data[name]
		if !ok {
			t.Errorf("template %q has no populated view in this test", name)
			continue
		}
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, name, v); err != nil {
			t.Errorf("template %q: %v", name, err)
		}
		if v == nil {
			if strings.TrimSpace(b.String()) != "" {
				t.Errorf("template file %q renders text outside its {{define}} blocks", name)
			}
			continue
		}
		if b.Len() == 0 || strings.Contains(b.String(), "ZgotmplZ") {
			t.Errorf("template %q rendered %d bytes (ZgotmplZ means a value was rejected)", name, b.Len())
		}
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := loadBasic(t).WriteHTML(&b, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, bad := range []string{"http://", "https://", "<script>window", "<img", "\x1b"} {
		if bad == "http://" && strings.Count(s, bad) == strings.Count(s, "http://www.w3.org/2000/svg") {
			continue
		}
		if strings.Contains(s, bad) {
			t.Errorf("html contains %q", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;window.pwned=1&lt;/script&gt;", "<svg", "Content-Security-Policy",
		`href="runs/k5.10-debian11-docker20.10.5-overlay2/r2/console.log"`, `class="ln hit"`} {
		if !strings.Contains(s, want) {
			t.Errorf("html lacks %q", want)
		}
	}
}

func TestCleanLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                      "plain",
		"\x1b[1;31mred\x1b[0m":       "red",
		"bell\x07 nul\x00":           "bell\u2407 nul\u2400",
		"osc \x1b]0;title\x07 after": "osc  after",
		"lone \x1b":                  "lone \u241b",
		"bad \xff utf8":              "bad \ufffd utf8",
		"tab\there":                  "tab    here",
		"rtl \u202e override":        "rtl \\u202e override",
		"<script>alert(1)</script>":  "<script>alert(1)</script>", // markup is the renderer's job
		"c1 \u0085 next line":        "c1 \\u0085 next line",
	} {
		if got := CleanLine(in); got != want {
			t.Errorf("CleanLine(%q) = %q, want %q", in, got, want)
		}
	}
	long := CleanLine(strings.Repeat("é", MaxLineBytes))
	if !strings.HasSuffix(long, " bytes cut]") || !utf8.ValidString(long) || len(long) > MaxLineBytes+40 {
		t.Errorf("long line not cut cleanly: len %d, suffix %q", len(long), long[len(long)-30:])
	}
}

func TestReadLinesHugeLine(t *testing.T) {
	var b strings.Builder
	b.WriteString("one\n")
	b.WriteString(strings.Repeat("A", 10<<20))
	b.WriteString("\nthree\x1b[0m\nfour")
	got, err := readLines(strings.NewReader(b.String()), []lineRange{{1, 10}})
	if err != nil {
		t.Fatal(err)
	}
	if got[1] != "one" || got[3] != "three" || got[4] != "four" || len(got) != 4 {
		t.Errorf("lines = %v", got)
	}
	if !strings.HasSuffix(got[2], " bytes cut]") || len(got[2]) > MaxLineBytes+50 {
		t.Errorf("line 2: len %d, tail %q", len(got[2]), got[2][max(0, len(got[2])-40):])
	}
}

func TestLoadRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"schema":    {`{"schema":"other/v9","run_id":"x","runs":[]}`, `schema "other/v9"`},
		"verdict":   {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"c","verdict":"maybe","repeat":1}]}`, `runs[0] (cell "c" repeat 1): unknown verdict "maybe"`},
		"escape":    {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"c","verdict":"pass","artifacts":{"console":"../../etc/passwd"}}]}`, "leaves the results directory"},
		"absolute":  {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"c","verdict":"pass","artifacts":{"console":"/etc/passwd"}}]}`, "is absolute"},
		"truncated": {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":`, "offset"},
		"no run id": {`{"schema":"matrixctl.results/v1","runs":[]}`, "run_id is empty"},
		"trailing":  {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[]} {}`, "trailing data"},
		"duplicate": {`{"schema":"matrixctl.results/v1","run_id":"x","run_id":"y","runs":[]}`, "duplicate key"},
		"type":      {`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"c","verdict":"pass","repeat":"one"}]}`, "runs[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ResultsFile), []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ResultsFile) {
				t.Errorf("Load: %v; want an error naming %s and containing %q", err, ResultsFile, tc.want)
			}
		})
	}
}

// TestDecodeKeepsOrderAcrossBatches decodes more runs than one decoding
// worker takes at a time: every run comes back in its place, and a bad run
// in a later batch is named by its index in the array.
func TestDecodeKeepsOrderAcrossBatches(t *testing.T) {
	const n = 3*runBatchLen + 17
	var b strings.Builder
	b.WriteString(`{"schema":"matrixctl.results/v1","run_id":"x","runs":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`{"cell":"c` + strconv.Itoa(i%7) + `","verdict":"pass","repeat":` + strconv.Itoa(i+1) + `}`)
	}
	b.WriteString("]}")
	f, err := Decode(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != n {
		t.Fatalf("%d runs, want %d", len(f.Runs), n)
	}
	for i, r := range f.Runs {
		if r.Repeat != i+1 || r.Cell != "c"+strconv.Itoa(i%7) {
			t.Fatalf("runs[%d] = %s repeat %d", i, r.Cell, r.Repeat)
		}
	}
	bad := strings.Replace(b.String(), `"repeat":701}`, `"repeat":"seven"}`, 1)
	bad = strings.Replace(bad, `"repeat":901}`, `"repeat":"nine"}`, 1)
	if _, err := Decode(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "runs[700]") {
		t.Fatalf("Decode: %v; want the first bad run, runs[700]", err)
	}
}

func TestMarkdownEscapesHostileText(t *testing.T) {
	f := &results.File{Schema: results.SchemaVersion, RunID: "x", Started: time.Unix(0, 0), Runs: []results.Run{{
		Cell: "evil|cell", Verdict: results.DockerFailure, Repeat: 1,
		Findings: []results.Finding{{Title: "<img src=x> | `code` [link](javascript:x) @channel \x1b[31m"}},
	}}}
	r, err := Build(context.Background(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, bad := range []string{"<img", "evil|cell", "[link](", "@channel", "\x1b", "`code`"} {
		if strings.Contains(s, bad) {
			t.Errorf("markdown contains %q:\n%s", bad, s)
		}
	}
}

func TestSignatureKeyIgnoresNumbers(t *testing.T) {
	a := signatureKey(`dockerd exited: time="2026-11-30T01:14:47.483987620Z" addr 0xffff8880deadbeef`)
	b := signatureKey(`dockerd exited: time="2026-11-30T01:16:08.827841370Z" addr 0xffff888000001000`)
	if a != b {
		t.Errorf("keys differ:\n%s\n%s", a, b)
	}
	if signatureKey("ext4 error") == signatureKey("xfs error") {
		t.Error("different titles share a key")
	}
}

func TestTailLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := 1; i <= 100; i++ {
		if i == 99 {
			b.WriteString(strings.Repeat("Z", 5<<20))
		}
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := tailLines(p, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].N != 98 || got[2].Text != "line 100" || !strings.HasSuffix(got[1].Text, "bytes cut]") {
		t.Errorf("tail = %+v", got)
	}
}

// TestHeatmapGroupsByCgroup: cells of the same axes under cgroup v1 and v2
// are two heatmaps (one box each), titled with their cgroup version; a
// report of one cgroup version keeps one heatmap per distro and docker.
func TestHeatmapGroupsByCgroup(t *testing.T) {
	run := func(cell, version string) results.Run {
		return results.Run{Cell: cell, Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2",
			Repeat: 1, Attempt: 1, Verdict: results.Pass, Host: &results.Host{CgroupVersion: version}}
	}
	tests := []struct {
		name   string
		runs   []results.Run
		titles []string
	}{
		{"both", []results.Run{run("c-cgroupv1", "1"), run("c-cgroupv2", "2")},
			[]string{"debian12 · docker 20.10.24 · cgroup v1", "debian12 · docker 20.10.24 · cgroup v2"}},
		{"one", []results.Run{run("c", "2"), {Cell: "d", Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "vfs", Repeat: 1, Attempt: 1, Verdict: results.Pass}},
			[]string{"debian12 · docker 20.10.24"}},
	}
	for _, tt := range tests {
		r, err := Build(context.Background(), &results.File{Schema: results.SchemaVersion, RunID: "x", Runs: tt.runs}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var titles []string
		for _, f := range r.facets(map[string]string{}) {
			titles = append(titles, f.Title)
		}
		if !slices.Equal(titles, tt.titles) {
			t.Errorf("%s: facets %q, want %q", tt.name, titles, tt.titles)
		}
	}
}

// TestKernelWarningsRankBelowCleanPasses: two cells with the same evidence,
// one whose kernel printed a WARNING in a passing run: the clean one ranks
// first, the other is "warned" with the title, and both outrank a flaky cell.
func TestKernelWarningsRankBelowCleanPasses(t *testing.T) {
	pass := func(cell string, fs ...results.Finding) results.Run {
		return results.Run{Cell: cell, Verdict: results.Pass, Findings: fs}
	}
	warn := results.Finding{Source: "console", Category: results.CatWarning, Severity: results.SevWarning,
		Title: "WARNING: CPU: 0 PID: 1 at fs/overlayfs/copy_up.c:42 ovl_copy_up+0x1/0x2"}
	f := &results.File{RunID: "x", Runs: []results.Run{
		pass("a-warned"), pass("a-warned", warn), pass("a-warned"),
		pass("b-clean"), pass("b-clean"), pass("b-clean"),
	}}
	for range 19 {
		f.Runs = append(f.Runs, pass("c-flaky"))
	}
	f.Runs = append(f.Runs, results.Run{Cell: "c-flaky", Verdict: results.ProbeFailure})
	r, err := Build(t.Context(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range r.Ranking {
		got = append(got, c.Cell+":"+string(c.Class))
	}
	// c-flaky's 19/20 outranks 3/3 on evidence (Wilson), as before; with the
	// same evidence the clean cell comes first.
	want := []string{"c-flaky:flaky", "b-clean:stable", "a-warned:warned"}
	if !slices.Equal(got, want) {
		t.Fatalf("ranking = %v, want %v", got, want)
	}
	w := r.cells["a-warned"]
	if w.Warned != 1 || len(w.Warnings) != 1 || w.Warnings[0] != warn.Title {
		t.Errorf("a-warned: warned %d, warnings %q; want 1 and the WARNING title", w.Warned, w.Warnings)
	}
}

// TestPerformanceWithinNoiseIsATie: with one run per cell the noise is
// unknown and performance ranks nothing; with repeats whose spread is
// larger than the difference between two cells, they tie (one group) and
// the cell ID decides, as the report says.
func TestPerformanceWithinNoiseIsATie(t *testing.T) {
	run := func(cell string, mbps float64) results.Run {
		return results.Run{Cell: cell, Verdict: results.Pass,
			Probes: []results.Probe{{Name: "io", OK: true, Metrics: map[string]float64{"write_mb_per_s": mbps}}}}
	}
	single := &results.File{RunID: "x", Runs: []results.Run{run("a-slower", 90), run("b-faster", 100)}}
	r, err := Build(t.Context(), single, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.PerfNoise.Measured || r.Ranking[0].Cell != "a-slower" || r.Ranking[0].PerfGroup != 0 {
		t.Errorf("one run each: noise %+v, first %s (group %d); want unmeasured, perf ranking nothing",
			r.Summary.PerfNoise, r.Ranking[0].Cell, r.Ranking[0].PerfGroup)
	}
	noisy := &results.File{RunID: "y", Runs: []results.Run{run("a-slower", 80), run("a-slower", 100),
		run("b-faster", 85), run("b-faster", 105)}}
	if r, err = Build(t.Context(), noisy, Options{}); err != nil {
		t.Fatal(err)
	}
	n := r.Summary.PerfNoise
	if !n.Measured || n.Points < 5 || r.Ranking[0].PerfGroup != r.Ranking[1].PerfGroup || r.Ranking[0].Cell != "a-slower" {
		t.Errorf("noisy repeats: noise %+v, ranking %s (g%d), %s (g%d); want one tie group, ID order", n,
			r.Ranking[0].Cell, r.Ranking[0].PerfGroup, r.Ranking[1].Cell, r.Ranking[1].PerfGroup)
	}
}

// TestCalibrationNormalises: the same cell's figures measured on an idle
// host and on a host giving half the CPU come out alike once scaled by the
// calibration beside each run (throughput up, latency down).
func TestCalibrationNormalises(t *testing.T) {
	run := func(cell string, mbps, latUS, cal float64) results.Run {
		return results.Run{Cell: cell, Verdict: results.Pass, Calibration: &results.Calibration{CPUMiBps: cal},
			Probes: []results.Probe{{Name: "io", OK: true,
				Metrics: map[string]float64{"write_mb_per_s": mbps, "fsync_latency_p99_us": latUS}}}}
	}
	f := &results.File{RunID: "x", Runs: []results.Run{
		run("idle", 100, 1000, 2000), run("idle", 98, 1020, 2000),
		run("loaded", 50, 2000, 1000), run("loaded", 49, 2040, 1000),
	}}
	r, err := Build(t.Context(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	idle, loaded := r.cells["idle"], r.cells["loaded"]
	if !loaded.Normalised || loaded.PerfGroup != idle.PerfGroup || r.Summary.PerfNoise.Calibration != 1500 {
		t.Errorf("idle %+v\nloaded %+v\nnoise %+v: want one tie group after normalisation", idle, loaded, r.Summary.PerfNoise)
	}
}

// TestLoadKeepsBudgetAndSeed: results.json's budget and fault seed reach the report.
func TestLoadKeepsBudgetAndSeed(t *testing.T) {
	doc := `{"schema":"matrixctl.results/v1","run_id":"x","provider":"qemu","fault_seed":3,
		"budget":{"runs":8,"rule":"r","spent":8,"stopped":"budget-spent","cells":[{"cell":"c","runs":8}]},"runs":[]}`
	f, err := Decode(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if f.FaultSeed != 3 || f.Budget == nil || f.Budget.Spent != 8 || len(f.Budget.Cells) != 1 {
		t.Fatalf("decoded %+v budget %+v", f, f.Budget)
	}
	r, err := Build(t.Context(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil || !strings.Contains(b.String(), "Adaptive repeats:** 8 VM-runs of a budget of 8; stopped: budget-spent") {
		t.Errorf("markdown lacks the budget: %v\n%s", err, b.String())
	}
}
