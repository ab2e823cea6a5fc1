package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

func TestRepeatRanges(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{
		{[]int{1, 2, 3, 4, 5, 7, 9, 10, 11, 12}, "1–5, 7, 9–12"},
		{[]int{3}, "3"},
		{[]int{4, 2, 3, 3}, "2–4"},
		{nil, ""},
	} {
		if got := repeatRanges(tt.in); got != tt.want {
			t.Errorf("repeatRanges(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCommonDir(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{[]string{"runs/c/r1", "runs/c/r2", "runs/c/r10"}, "runs/c"},
		{[]string{"runs/c/r1"}, "runs/c/r1"},
		{[]string{"runs/a/r1", "other/b"}, ""},
		{[]string{"."}, ""},
		{nil, ""},
	} {
		if got := commonDir(tt.in); got != tt.want {
			t.Errorf("commonDir(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// manyRuns is a report of cells × repeats runs; cell "bad" fails every
// third repeat, the others pass. Each run has a console artifact.
func manyRuns(cells, repeats int) *results.File {
	f := &results.File{Schema: results.SchemaVersion, RunID: "many", Provider: "qemu"}
	for c := range cells {
		id := fmt.Sprintf("k6.1-debian12-docker27.0.%d-overlay2", c)
		if c == 0 {
			id = "bad"
		}
		for rep := 1; rep <= repeats; rep++ {
			r := results.Run{Cell: id, Kernel: "6.1", Distro: "debian12", Docker: fmt.Sprintf("27.0.%d", c), Driver: "overlay2",
				Repeat: rep, Attempt: 1, Verdict: results.Pass,
				Artifacts: map[string]string{"console": fmt.Sprintf("runs/%s/r%d/console.log", id, rep)}}
			if c == 0 && rep%3 == 0 {
				r.Verdict, r.Reason = results.ProbeFailure, "io checksum mismatch"
			}
			f.Runs = append(f.Runs, r)
		}
	}
	return f
}

// TestDetailPlanShowsTheRunsThatMatter: the latest failed runs (capped)
// and the latest runs in full, the rest counted and linked; the page
// budget goes to failures first.
func TestDetailPlanShowsTheRunsThatMatter(t *testing.T) {
	r, err := Build(context.Background(), manyRuns(3, 20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, c := range r.Ranking {
		ids = append(ids, c.Cell)
	}
	plan := r.detailPlan(ids)
	var reps []int
	for _, i := range plan["bad"] {
		reps = append(reps, r.runs["bad"][i].Repeat)
	}
	// Failed: 3, 6, …, 18; the latest five are 6–18; the latest two are 19, 20.
	if want := []int{6, 9, 12, 15, 18, 19, 20}; !slices.Equal(reps, want) {
		t.Errorf("bad cell shows repeats %v in full, want %v", reps, want)
	}
	for _, id := range ids[:2] {
		if id != "bad" && len(plan[id]) != latestRuns {
			t.Errorf("cell %s shows %d runs in full, want the latest %d", id, len(plan[id]), latestRuns)
		}
	}
	more := moreRuns(r.runs["bad"], splitRuns(20, plan["bad"]), HTMLOptions{LinkBase: "res"})
	if more == nil || more.Count != 13 || more.Href != "res/runs/bad/" {
		t.Fatalf("more = %+v, want 13 runs linked to res/runs/bad/", more)
	}
	if got := fmt.Sprint(more.Verdicts); !strings.Contains(got, "1–2, 4–5, 7–8, 10–11, 13–14, 16–17") ||
		!strings.Contains(got, "probe-failure 1 3") {
		t.Errorf("more verdicts = %s", got)
	}

	// Over the page budget: failures first, then the latest runs of the
	// best cells; every run is shown in full at most once.
	big, err := Build(context.Background(), manyRuns(maxDetailRuns, 4), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, c := range big.Ranking {
		ids = append(ids, c.Cell)
	}
	plan = big.detailPlan(ids)
	total := 0
	for _, shown := range plan {
		total += len(shown)
	}
	if total != maxDetailRuns {
		t.Errorf("%d runs in full, want the page budget %d", total, maxDetailRuns)
	}
	if !slices.Contains(plan["bad"], 2) || len(plan[ids[0]]) != latestRuns || len(plan[ids[len(ids)-2]]) != 0 {
		t.Errorf("plan: bad %v, best %v, second worst %v", plan["bad"], plan[ids[0]], plan[ids[len(ids)-2]])
	}
	var html bytes.Buffer
	if err := big.WriteHTML(&html, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	page := html.String()
	// A cell without a drill-down: its anchor is its ranking row.
	quiet := ids[len(ids)-2]
	if a := big.anchorOf(quiet); !strings.Contains(page, `<tr id="`+a+`">`) || strings.Contains(page, `<details class="cell" id="`+a+`"`) {
		t.Errorf("cell %s without runs in full: want its anchor on its ranking row, not a drill-down", quiet)
	}
	if n := strings.Count(page, `<div class="run">`); n != maxDetailRuns {
		t.Errorf("page shows %d runs in full, want %d", n, maxDetailRuns)
	}
}

// TestDecodeAgreesWithEncodingJSON: the streaming decoder reads the real
// runner's results (and the hand-made corpus) exactly as encoding/json does.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, dir := range []string{"testdata/basic", "testdata/real-qemu"} {
		b, err := os.ReadFile(filepath.Join(dir, ResultsFile))
		if err != nil {
			t.Fatal(err)
		}
		var want results.File
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: Decode and encoding/json disagree:\n%+v\n%+v", dir, got, &want)
		}
	}
	// Case-insensitive names, integer-nanosecond durations, invalid UTF-8.
	doc := `{"schema":"` + results.SchemaVersion + `","run_id":"x","runs":[{"Cell":"c","verdict":"pass","repeat":1,` +
		`"phases":[{"name":"boot","duration_ns":1500000000}],"reason":"bad ` + "\xff" + ` byte"}]}`
	var want results.File
	if err := json.Unmarshal([]byte(doc), &want); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("Decode and encoding/json disagree:\n%+v\n%+v", got, &want)
	}
}
