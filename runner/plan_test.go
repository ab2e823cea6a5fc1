package runner

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// TestPlanWrittenFirstAndKeptOnResume: results.json holds the plan before
// any run ends (so an interrupted run has it), with every cell's part, and
// a resume keeps it (with the repeats it runs).
func TestPlanWrittenFirstAndKeptOnResume(t *testing.T) {
	okProbe := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	scripts := map[string]*script{"slow": {probeBlocks: true, probes: okProbe}}
	fake := newFake(scripts)
	out := t.TempDir()
	stop := make(chan struct{})
	aufs := testCell("aufs")
	aufs.Status, aufs.Reason = matrix.StatusUnsupported, "no aufs in this kernel"
	cells := []matrix.Cell{testCell("slow"), testCell("c"), aufs}
	left := []results.PlanCell{{Cell: "k5.10-x", Kernel: "5.10", Distro: "debian11", Docker: "20.10.5", Driver: "vfs",
		Status: results.PlanFiltered, Reason: "filtered out by --kernel 6.1"}}
	opts := Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Parallel: 1, Stop: stop, Repeat: 2,
		NotSelected: left, Shard: "1/1"}
	runThenStop(t, cells, opts, stop)
	want := &results.Plan{Shard: "1/1", Cells: []results.PlanCell{
		{Cell: "slow", Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2", Status: results.PlanSelected, Repeats: 2},
		{Cell: "c", Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2", Status: results.PlanSelected, Repeats: 2},
		{Cell: "aufs", Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2", Status: results.PlanUnsupported, Reason: "no aufs in this kernel"},
		left[0],
	}}
	got := readResults(t, out)
	if !reflect.DeepEqual(want, got.Plan) {
		t.Fatalf("plan of the interrupted run:\n got %s\nwant %s", js(got.Plan), js(want))
	}
	if len(got.Runs) != 0 {
		t.Fatalf("runs recorded though none ended: %+v", got.Runs)
	}
	// resume with one repeat each: the plan stays, its repeats follow
	scripts["slow"].probeBlocks = false
	opts.Stop, opts.Repeat, opts.NotSelected = nil, 1, nil
	f, err := Resume(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want.Cells[0].Repeats, want.Cells[1].Repeats = 1, 1
	if got := readResults(t, out).Plan; !reflect.DeepEqual(want, got) {
		t.Errorf("plan after resume:\n got %s\nwant %s", js(got), js(want))
	}
	if len(f.Runs) != 3 {
		t.Errorf("after resume: %d runs, want 3", len(f.Runs))
	}
}

// TestPlanOfABudget: a budgeted run's plan says its repeats are adaptive.
func TestPlanOfABudget(t *testing.T) {
	cells, scripts := budgetCells()
	fake := newFake(scripts)
	out := t.TempDir()
	if _, err := Run(context.Background(), cells, budgetOpts(fake, out, 4)); err != nil {
		t.Fatal(err)
	}
	p := readResults(t, out).Plan
	if p == nil || !p.Adaptive || len(p.Cells) != len(cells) {
		t.Fatalf("plan %+v; want an adaptive plan of %d cells", p, len(cells))
	}
	for _, c := range p.Cells {
		if c.Repeats != 0 {
			t.Errorf("%s: %d repeats planned in an adaptive plan", c.Cell, c.Repeats)
		}
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
