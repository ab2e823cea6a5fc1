package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// planFile is a results.json of a plan and the runs that ended.
func planFile(plan *results.Plan, runs ...results.Run) *results.File {
	return &results.File{Schema: results.SchemaVersion, RunID: "r1", Provider: "qemu",
		Started: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Plan: plan, Runs: runs}
}

func planCell(id string, status results.PlanStatus, repeats int, reason string) results.PlanCell {
	return results.PlanCell{Cell: id, Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: id,
		Status: status, Repeats: repeats, Reason: reason}
}

func passRun(cell string, repeat int) results.Run {
	return results.Run{Cell: cell, Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: cell,
		Repeat: repeat, Attempt: 1, Verdict: results.Pass}
}

func build(t *testing.T, f *results.File) *Report {
	t.Helper()
	r, err := Build(context.Background(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func notRunOf(r *Report) []string {
	var out []string
	for _, n := range r.NotRun {
		out = append(out, fmt.Sprintf("%s:%s:%d", n.Class, n.Cell, n.Missing))
	}
	return out
}

// TestReportOfAnInterruptedRun is the bug the plan fixes: interrupted after
// 4 of 20 planned runs, the report said "Not run (0) — Every cell ran".
func TestReportOfAnInterruptedRun(t *testing.T) {
	plan := &results.Plan{}
	var runs []results.Run
	for i := range 5 {
		id := fmt.Sprintf("c%d", i)
		plan.Cells = append(plan.Cells, planCell(id, results.PlanSelected, 4, ""))
		if i == 0 {
			runs = append(runs, passRun(id, 1), passRun(id, 2), passRun(id, 3), passRun(id, 4))
		}
	}
	r := build(t, planFile(plan, runs...))
	want := PlanCounts{Cells: 5, Selected: 5, Planned: 20, Ran: 4, NotRun: 16, Interrupted: 16}
	if r.Summary.Plan == nil || !reflect.DeepEqual(*r.Summary.Plan, want) {
		t.Fatalf("plan counts %+v, want %+v", r.Summary.Plan, want)
	}
	if got, w := notRunOf(r), []string{"interrupted:c1:4", "interrupted:c2:4", "interrupted:c3:4", "interrupted:c4:4"}; !reflect.DeepEqual(got, w) {
		t.Errorf("not run %q, want %q", got, w)
	}
	var html bytes.Buffer
	if err := r.WriteHTML(&html, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Not run (4 cells · 16 of 20 planned runs)", "16 of 20 planned runs did not run",
		"4 of 4 planned runs never ran (the run was interrupted)"} {
		if !strings.Contains(html.String(), s) {
			t.Errorf("html lacks %q", s)
		}
	}
	if strings.Contains(html.String(), "Every cell ran") {
		t.Errorf("html says every cell ran")
	}
}

// TestReportOfPlanStatuses: a partly run cell, an unsupported cell that
// never got its record, a filtered and an other-shard cell, in every output.
func TestReportOfPlanStatuses(t *testing.T) {
	plan := &results.Plan{Shard: "1/2", Cells: []results.PlanCell{
		planCell("a", results.PlanSelected, 2, ""),
		planCell("b", results.PlanSelected, 2, ""),
		planCell("c", results.PlanSelected, 2, ""),
		planCell("aufs", results.PlanUnsupported, 0, "no aufs module"),
		planCell("vfs", results.PlanFiltered, 0, "filtered out by --driver a,b,c,aufs"),
		planCell("btrfs", results.PlanOtherShard, 0, "in shard 2/2, not this shard 1/2"),
	}}
	r := build(t, planFile(plan, passRun("a", 1), passRun("a", 2), passRun("b", 1)))
	want := PlanCounts{Cells: 6, Selected: 3, Unsupported: 1, Filtered: 1, OtherShard: 1, Shard: "1/2",
		Planned: 6, Ran: 3, NotRun: 3, Interrupted: 3}
	if !reflect.DeepEqual(*r.Summary.Plan, want) {
		t.Errorf("plan counts %+v, want %+v", *r.Summary.Plan, want)
	}
	if got, w := notRunOf(r), []string{"interrupted:c:2", "unsupported:aufs:0", "filtered:vfs:0", "other-shard:btrfs:0"}; !reflect.DeepEqual(got, w) {
		t.Errorf("not run %q, want %q", got, w)
	}
	if len(r.Incomplete) != 1 || r.Incomplete[0].Cell != "b" || r.Incomplete[0].Missing != 1 {
		t.Errorf("incomplete %+v, want b missing 1 run", r.Incomplete)
	}
	var junit bytes.Buffer
	if err := r.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`name="c/repeat-1"`, `name="c/repeat-2"`, `name="b/repeat-2"`, `message="interrupted: never ran"`,
		`name="aufs"`, `message="unsupported: no aufs module"`, `message="filtered: filtered out by --driver a,b,c,aufs"`,
		`message="other-shard: in shard 2/2, not this shard 1/2"`, `tests="9"`, `skipped="6"`} {
		if !strings.Contains(junit.String(), s) {
			t.Errorf("junit lacks %s:\n%s", s, junit.String())
		}
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Runs: 6 planned, 3 ran, 3 not run (3 interrupted)", "(this is shard 1/2)",
		"**Not run (4):**", "- c — interrupted: 2 of 2 planned runs never ran (the run was interrupted)", "**Ranked, but missing planned runs (1):**"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"planned_runs": 6`, `"not_run_runs": 3`, `"missing_runs": 2`, `"class": "other-shard"`} {
		if !strings.Contains(js.String(), s) {
			t.Errorf("json report lacks %s", s)
		}
	}
	var html bytes.Buffer
	if err := r.WriteHTML(&html, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	// left-out cells are listed, but get no drill-down or heatmap box
	if !strings.Contains(html.String(), "btrfs <span class=\"badge b-other-shard\">") || strings.Contains(html.String(), `id="c4-btrfs"`) {
		t.Errorf("html: other-shard cell listed wrong")
	}
}

// TestReportOfABudget: the cells a budget never ran are not needed or
// not affordable, not interrupted, and the counts follow the budget.
func TestReportOfABudget(t *testing.T) {
	plan := &results.Plan{Adaptive: true, Cells: []results.PlanCell{
		planCell("a", results.PlanSelected, 0, ""), planCell("b", results.PlanSelected, 0, ""), planCell("c", results.PlanSelected, 0, ""),
	}}
	runs := []results.Run{passRun("a", 1), passRun("a", 2), passRun("b", 1)}
	for _, tc := range []struct {
		budget *results.Budget
		class  Class
		counts PlanCounts
	}{
		{&results.Budget{Runs: 5, Spent: 3, Stopped: "confident", StopReason: "a is best"}, ClassBudgetNotNeeded,
			PlanCounts{Planned: 5, Ran: 3, NotRun: 2, Unneeded: 2}},
		{&results.Budget{Runs: 3, Spent: 3, Stopped: "budget-spent"}, ClassBudgetSpent,
			PlanCounts{Planned: 3, Ran: 3}},
		{&results.Budget{Runs: 6, Spent: 4, Stopped: "interrupted"}, ClassInterrupted,
			PlanCounts{Planned: 6, Ran: 3, NotRun: 3, Interrupted: 3}},
		{nil, ClassInterrupted, PlanCounts{Planned: 3, Ran: 3}}, // killed: only the runs are known
	} {
		f := planFile(plan, runs...)
		f.Budget = tc.budget
		r := build(t, f)
		got := *r.Summary.Plan
		got.Cells, got.Selected, got.Adaptive = 0, 0, false
		if !reflect.DeepEqual(got, tc.counts) {
			t.Errorf("budget %+v: counts %+v, want %+v", tc.budget, got, tc.counts)
		}
		if len(r.NotRun) != 1 || r.NotRun[0].Cell != "c" || r.NotRun[0].Class != tc.class {
			t.Errorf("budget %+v: not run %+v, want c %s", tc.budget, r.NotRun, tc.class)
		}
	}
}

func TestValidatePlan(t *testing.T) {
	for _, p := range []results.Plan{
		{Cells: []results.PlanCell{{Cell: "", Status: results.PlanSelected}}},
		{Cells: []results.PlanCell{{Cell: "a", Status: "maybe"}}},
		{Cells: []results.PlanCell{{Cell: "a", Status: results.PlanSelected, Repeats: maxPlanRepeats + 1}}},
		{Cells: []results.PlanCell{{Cell: "a", Status: results.PlanSelected}, {Cell: "a", Status: results.PlanFiltered}}},
	} {
		f := planFile(&p)
		b, _ := json.Marshal(f)
		if _, err := Decode(bytes.NewReader(b)); err == nil {
			t.Errorf("plan %+v accepted", p)
		}
	}
}

// TestMergeCombinesPlans: a cell planned in any shard is planned in the
// merged results, and the merged report lists no other-shard cell.
func TestMergeCombinesPlans(t *testing.T) {
	dirs := make([]string, 2)
	for i := range dirs {
		plan := &results.Plan{Shard: fmt.Sprintf("%d/2", i+1)}
		for j, id := range []string{"a", "b"} {
			if i == j {
				plan.Cells = append(plan.Cells, planCell(id, results.PlanSelected, 1, ""))
			} else {
				plan.Cells = append(plan.Cells, planCell(id, results.PlanOtherShard, 0, "another shard"))
			}
		}
		plan.Cells = append(plan.Cells, planCell("vfs", results.PlanFiltered, 0, "filtered out by --driver a,b"))
		f := planFile(plan, passRun([]string{"a", "b"}[i], 1))
		f.RunID = fmt.Sprintf("shard-%d", i)
		dirs[i] = t.TempDir()
		b, _ := json.Marshal(f)
		if err := os.WriteFile(filepath.Join(dirs[i], ResultsFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "merged")
	if _, err := Merge(out, dirs); err != nil {
		t.Fatal(err)
	}
	f, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	want := &results.Plan{Shards: []string{"1/2", "2/2"}, Cells: []results.PlanCell{
		planCell("a", results.PlanSelected, 1, ""), planCell("b", results.PlanSelected, 1, ""),
		planCell("vfs", results.PlanFiltered, 0, "filtered out by --driver a,b"),
	}}
	if !reflect.DeepEqual(f.Plan, want) {
		t.Fatalf("merged plan %+v, want %+v", f.Plan, want)
	}
	r := build(t, f)
	if p := r.Summary.Plan; p.Planned != 2 || p.Ran != 2 || p.NotRun != 0 || p.OtherShard != 0 {
		t.Errorf("merged counts %+v", p)
	}
	if got := notRunOf(r); !reflect.DeepEqual(got, []string{"filtered:vfs:0"}) {
		t.Errorf("merged not run %q", got)
	}
	// a shard without a plan: the merged results have none either
	b, _ := json.Marshal(planFile(nil, passRun("c", 1)))
	old := t.TempDir()
	if err := os.WriteFile(filepath.Join(old, ResultsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "merged")
	if _, err := Merge(out2, []string{dirs[0], old}); err != nil {
		t.Fatal(err)
	}
	if f, err := Load(out2); err != nil || f.Plan != nil {
		t.Errorf("merge with a plan-less shard: plan %+v, err %v; want none", f.Plan, err)
	}
}
