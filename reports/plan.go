package reports

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
)

// Not-run classes: why a cell of the plan has no (or too few) final runs.
// The report's NotRun list holds them beside ClassInconclusive and
// ClassUnsupported.
const (
	// ClassInterrupted: planned runs never ran, the run was interrupted
	// (Ctrl-C, SIGKILL, a crash of the controller) and not resumed.
	ClassInterrupted Class = "interrupted"
	// ClassBudgetSpent: a budgeted run spent its budget before the cell's first run.
	ClassBudgetSpent Class = "budget-spent"
	// ClassBudgetNotNeeded: a budgeted run was decided without the cell's runs.
	ClassBudgetNotNeeded Class = "budget-not-needed"
	// ClassFiltered: a cell filter of the run left the cell out.
	ClassFiltered Class = "filtered"
	// ClassOtherShard: the cell belongs to another shard of the run.
	ClassOtherShard Class = "other-shard"
)

// notRunOrder orders the NotRun list of a report with a plan: what needs
// attention (runs that should have happened) first, what was meant to be
// left out last.
var notRunOrder = []Class{ClassInterrupted, ClassInconclusive, ClassBudgetSpent, ClassBudgetNotNeeded,
	ClassUnsupported, ClassFiltered, ClassOtherShard}

// Selected reports whether the run meant to run the cell: false for cells
// left out by a filter or a shard, which have no drill-down.
func (n NotRun) Selected() bool { return n.Class != ClassFiltered && n.Class != ClassOtherShard }

// heatmapLabel is a not-run cell's short label in the heatmap.
func (n NotRun) heatmapLabel() string {
	switch n.Class {
	case ClassInconclusive:
		return "infra errors"
	case ClassBudgetSpent, ClassBudgetNotNeeded:
		return "budget"
	}
	return string(n.Class)
}

// PlanCounts compares the plan of a run (results.File.Plan) with the runs
// that ended: the summary's "runs planned, ran, not run".
type PlanCounts struct {
	// Cells of the plan by status (plus Shards: the shards a merged plan combines).
	Cells       int      `json:"cells"`
	Selected    int      `json:"selected"`
	Unsupported int      `json:"unsupported"`
	Filtered    int      `json:"filtered"`
	OtherShard  int      `json:"other_shard"`
	Shard       string   `json:"shard,omitempty"`
	Shards      []string `json:"shards,omitempty"`
	// Adaptive: a budget decided the repeats as the run went.
	Adaptive bool `json:"adaptive,omitempty"`
	// Planned runs of the selected cells (adaptive: the budget's runs, or
	// the runs it started when it had no fixed number); Ran of them ended
	// with a verdict; NotRun did not: Interrupted, or Unneeded (a budget's
	// runs it did not need or could not spend).
	Planned     int `json:"planned_runs"`
	Ran         int `json:"ran_runs"`
	NotRun      int `json:"not_run_runs"`
	Interrupted int `json:"interrupted_runs"`
	Unneeded    int `json:"budget_unused_runs,omitempty"`
}

// maxPlanRepeats bounds a plan cell's repeats (matrix.MaxRepeats).
const maxPlanRepeats = 1000

// ValidatePlan checks a results.json plan: known statuses, cell IDs once
// each, repeats within bounds (a report lists every missing repeat).
func ValidatePlan(p *results.Plan) error {
	var errs []error
	seen := make(map[string]bool, len(p.Cells))
	for i, c := range p.Cells {
		switch {
		case c.Cell == "":
			errs = append(errs, fmt.Errorf("plan cells[%d]: cell is empty", i))
		case seen[c.Cell]:
			errs = append(errs, fmt.Errorf("plan cells[%d]: cell %q twice", i, c.Cell))
		}
		seen[c.Cell] = true
		switch c.Status {
		case results.PlanSelected, results.PlanUnsupported, results.PlanFiltered, results.PlanOtherShard:
		default:
			errs = append(errs, fmt.Errorf("plan cells[%d]: unknown status %q", i, c.Status))
		}
		if c.Repeats < 0 || c.Repeats > maxPlanRepeats {
			errs = append(errs, fmt.Errorf("plan cells[%d]: repeats %d not in 0-%d", i, c.Repeats, maxPlanRepeats))
		}
	}
	return errors.Join(errs...)
}

// applyPlan adds the plan's cells that did not run (or not every planned
// time) to NotRun and Incomplete and counts planned runs. Results without a
// plan keep the report as the runs alone make it.
func (r *Report) applyPlan(f *results.File) {
	p := f.Plan
	if p == nil {
		return
	}
	pc := &PlanCounts{Cells: len(p.Cells), Shard: CleanLine(p.Shard), Adaptive: p.Adaptive}
	for _, s := range p.Shards {
		pc.Shards = append(pc.Shards, CleanLine(s))
	}
	notRun := map[string]int{}
	for i, n := range r.NotRun {
		notRun[n.Cell] = i
	}
	bud := newBudgetView(f.Budget)
	for _, c := range p.Cells {
		runs := r.runs[c.Cell]
		switch c.Status {
		case results.PlanSelected:
			pc.Selected++
			if p.Adaptive {
				pc.Ran += len(runs)
				if len(runs) == 0 {
					class, reason := bud.unrun()
					r.addNotRun(c, class, reason, 0)
				}
				continue
			}
			got := 0
			for _, run := range runs {
				if run.Repeat >= 1 && run.Repeat <= c.Repeats {
					got++
				}
			}
			pc.Planned += c.Repeats
			pc.Ran += got
			missing := c.Repeats - got
			if missing <= 0 {
				continue
			}
			pc.Interrupted += missing
			reason := fmt.Sprintf("%d of %d planned runs never ran (the run was interrupted)", missing, c.Repeats)
			if i, ok := notRun[c.Cell]; ok {
				n := &r.NotRun[i]
				n.Missing = missing
				n.Reason += "; " + reason
			} else if score, ok := r.cells[c.Cell]; ok {
				r.Incomplete = append(r.Incomplete, NotRun{Cell: score.Cell, Kernel: score.Kernel, Distro: score.Distro,
					Docker: score.Docker, Driver: score.Driver, Cgroup: score.Cgroup, Class: ClassInterrupted,
					Runs: score.Runs, Missing: missing, Reason: reason})
			} else {
				r.addNotRun(c, ClassInterrupted, reason, missing)
			}
		case results.PlanUnsupported:
			pc.Unsupported++
			if len(runs) == 0 {
				r.addNotRun(c, ClassUnsupported, cmpOr(c.Reason, "unsupported"), 0)
			}
		case results.PlanFiltered:
			pc.Filtered++
			r.addNotRun(c, ClassFiltered, cmpOr(c.Reason, "filtered out"), 0)
		case results.PlanOtherShard:
			pc.OtherShard++
			r.addNotRun(c, ClassOtherShard, cmpOr(c.Reason, "in another shard"), 0)
		}
	}
	if p.Adaptive {
		pc.Planned, pc.Interrupted, pc.Unneeded = bud.planned(pc.Ran)
	}
	pc.NotRun = pc.Planned - pc.Ran
	r.Summary.Plan = pc
	slices.SortStableFunc(r.NotRun, func(a, b NotRun) int {
		return cmp.Compare(slices.Index(notRunOrder, a.Class), slices.Index(notRunOrder, b.Class))
	})
}

// addNotRun lists a plan cell without runs.
func (r *Report) addNotRun(c results.PlanCell, class Class, reason string, missing int) {
	if _, ran := r.runs[c.Cell]; ran {
		return // its runs put it in the ranking or in NotRun already
	}
	r.NotRun = append(r.NotRun, NotRun{Cell: CleanLine(c.Cell), Kernel: CleanLine(c.Kernel), Distro: CleanLine(c.Distro),
		Docker: CleanLine(c.Docker), Driver: CleanLine(c.Driver), Class: class, Missing: missing, Reason: CleanLine(reason)})
}

// budgetView is how a budgeted run ended, for its cells and runs that did
// not run.
type budgetView struct{ b *results.Budget }

func newBudgetView(b *results.Budget) budgetView { return budgetView{b} }

// unrun is the class and reason of a selected cell the budget never ran.
func (v budgetView) unrun() (Class, string) {
	b := v.b
	switch {
	case b == nil || b.Stopped == "interrupted" || b.Stopped == "":
		return ClassInterrupted, "interrupted before the budget ran this cell"
	case b.Stopped == "budget-spent" || b.Stopped == "time-spent":
		return ClassBudgetSpent, "budget spent before this cell's first run: " + b.StopReason
	}
	return ClassBudgetNotNeeded, "budget: not needed, the ranking was decided without it: " + b.StopReason
}

// planned splits an adaptive run's runs: planned (the budget's runs, or
// those it started), interrupted (started, never ended) and unneeded (the
// budget's runs it did not start).
func (v budgetView) planned(ran int) (planned, interrupted, unneeded int) {
	b := v.b
	if b == nil {
		return ran, 0, 0 // killed before it recorded its budget: only the runs are known
	}
	started := max(b.Spent, ran)
	planned = max(b.Runs, started)
	interrupted = started - ran
	unneeded = planned - started
	if b.Stopped == "interrupted" {
		interrupted, unneeded = planned-ran, 0
	}
	return planned, interrupted, unneeded
}

// markdown is the plan's line of the Markdown summary.
func (p *PlanCounts) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Plan:** %d cells — %d selected, %d unsupported, %d filtered out, %d in other shards", p.Cells,
		p.Selected, p.Unsupported, p.Filtered, p.OtherShard)
	if p.Shard != "" {
		fmt.Fprintf(&b, " (this is shard %s)", mdEscape(p.Shard))
	}
	b.WriteString(". ")
	if p.Adaptive {
		b.WriteString("Repeats decided by the budget; runs: ")
	} else {
		b.WriteString("Runs: ")
	}
	fmt.Fprintf(&b, "%d planned, %d ran, %d not run", p.Planned, p.Ran, p.NotRun)
	if p.Interrupted > 0 {
		fmt.Fprintf(&b, " (%d interrupted)", p.Interrupted)
	}
	if p.Unneeded > 0 {
		fmt.Fprintf(&b, " (%d of the budget unused)", p.Unneeded)
	}
	b.WriteString(".\n\n")
	return b.String()
}

// junitNotRun adds the not-run facts to a JUnit document as skipped
// testcases with their reason: each missing planned run of a cell
// ("<cell>/repeat-<n>"), and each cell without runs that has no repeat to
// name (unsupported, filtered, other shard, a budget's: "<cell>").
func (r *Report) junitNotRun(out *junitSuites, suites map[string]int) {
	skip := func(distro, docker, name, reason string) {
		cls := CleanLine(distro) + ".docker-" + CleanLine(docker)
		s := out.suite(suites, cls)
		s.Cases = append(s.Cases, junitCase{Classname: cls, Name: name, Time: "0.000",
			Skipped: &junitProblem{Message: CleanLine(reason)}})
		s.Tests++
		s.Skipped++
	}
	missing := func(n NotRun) {
		have := map[int]bool{}
		for _, run := range r.runs[n.Cell] {
			have[run.Repeat] = true
		}
		for rep, left := 1, n.Missing; left > 0; rep++ {
			if !have[rep] {
				skip(n.Distro, n.Docker, fmt.Sprintf("%s/repeat-%d", n.Cell, rep), string(n.Class)+": never ran")
				left--
			}
		}
	}
	for _, n := range r.NotRun {
		switch {
		case n.Missing > 0:
			missing(n)
		case len(r.runs[n.Cell]) == 0:
			skip(n.Distro, n.Docker, n.Cell, string(n.Class)+": "+n.Reason)
		}
	}
	for _, n := range r.Incomplete {
		missing(n)
	}
}

// planRank orders plan statuses for merging shards: a cell planned in any
// shard is planned; one every shard left out keeps the first reason.
var planRank = []results.PlanStatus{results.PlanSelected, results.PlanUnsupported, results.PlanFiltered, results.PlanOtherShard}

// mergePlans combines the plans of shards (nil when a shard has none: its
// selection is unknown, so no merged plan could say what did not run).
// A selected cell keeps the most repeats any shard planned.
func mergePlans(files []*results.File) *results.Plan {
	merged := &results.Plan{Cells: []results.PlanCell{}}
	index := map[string]int{}
	for _, f := range files {
		p := f.Plan
		if p == nil {
			return nil
		}
		merged.Adaptive = merged.Adaptive || p.Adaptive
		if p.Shard != "" {
			merged.Shards = append(merged.Shards, p.Shard)
		}
		merged.Shards = append(merged.Shards, p.Shards...)
		for _, c := range p.Cells {
			i, ok := index[c.Cell]
			if !ok {
				index[c.Cell] = len(merged.Cells)
				merged.Cells = append(merged.Cells, c)
				continue
			}
			m := &merged.Cells[i]
			switch a, b := slices.Index(planRank, c.Status), slices.Index(planRank, m.Status); {
			case a < b:
				*m = c
			case a == b && c.Status == results.PlanSelected:
				m.Repeats = max(m.Repeats, c.Repeats)
			}
		}
	}
	slices.Sort(merged.Shards)
	merged.Shards = slices.Compact(merged.Shards)
	return merged
}
