package runner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

func budgetCells() ([]matrix.Cell, map[string]*script) {
	cells := []matrix.Cell{testCell("good-a"), testCell("good-b"), testCell("fails")}
	un := testCell("aufs")
	un.Status, un.Reason = matrix.StatusUnsupported, "no aufs"
	cells = append(cells, un)
	ok := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	return cells, map[string]*script{
		"good-a": {probes: ok}, "good-b": {probes: ok},
		"fails": {probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: false, Errors: []string{"boom"}}}}},
	}
}

func budgetOpts(fake *fakeProvider, out string, runs int) Options {
	return Options{Provider: fake, Prober: fakeProber{fake}, Checker: CheckerFunc(fakeChecker), Out: out,
		Parallel: 1, HostMemoryMB: 8192, ShutdownTimeout: time.Second, Budget: &Budget{Runs: runs}, FaultSeed: 1}
}

// decisionsOf lists the journalled decisions of a results directory.
func decisionsOf(t *testing.T, dir string) []decision {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := readJournal(f)
	if err != nil {
		t.Fatal(err)
	}
	return st.Decisions
}

// TestBudget: every runnable cell runs once, the rest of the budget goes
// where the ranking is uncertain (not to the failing cell), the
// unsupported cell costs nothing, and results.json says where the runs
// went and why the run stopped.
func TestBudget(t *testing.T) {
	cells, scripts := budgetCells()
	out := t.TempDir()
	f, err := Run(context.Background(), cells, budgetOpts(newFake(scripts), out, 8))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	b := f.Budget
	if b == nil || b.Spent != 8 || b.Stopped != stopBudgetSpent || b.Runs != 8 {
		t.Fatalf("budget = %+v", b)
	}
	got := map[string]int{}
	for _, c := range b.Cells {
		got[c.Cell] = c.Runs
	}
	if got["good-a"]+got["good-b"] != 7 || got["fails"] != 1 || len(got) != 3 {
		t.Errorf("runs per cell = %v; want one for the failing cell, the rest on the two good ones", got)
	}
	for _, run := range readResults(t, out).Runs {
		if run.Verdict != results.Unsupported && run.Decision == "" {
			t.Errorf("%s r%d has no decision", run.Cell, run.Repeat)
		}
	}
	if n := len(decisionsOf(t, out)); n != 8 {
		t.Errorf("journal has %d decisions, want 8", n)
	}
}

// TestBudgetResumeMakesTheSameDecisions: a budgeted run cut short after
// four finished runs (its journal truncated there) and resumed decides
// exactly as the run that was never interrupted.
func TestBudgetResumeMakesTheSameDecisions(t *testing.T) {
	cells, scripts := budgetCells()
	full := t.TempDir()
	if _, err := Run(context.Background(), cells, budgetOpts(newFake(scripts), full, 8)); err != nil {
		t.Fatal(err)
	}
	want := decisionsOf(t, full)

	cut := t.TempDir()
	data, err := os.ReadFile(filepath.Join(full, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	var kept bytes.Buffer
	finished := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() && finished < 4 {
		kept.Write(sc.Bytes())
		kept.WriteByte('\n')
		if bytes.Contains(sc.Bytes(), []byte(`"type":"finished"`)) {
			finished++
		}
	}
	if err := os.WriteFile(filepath.Join(cut, JournalName), kept.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := budgetOpts(newFake(scripts), cut, 0)
	opts.Budget = nil // the plan recorded in the journal has it
	f, err := Resume(context.Background(), opts)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := decisionsOf(t, cut); !slices.Equal(got, want) {
		t.Errorf("resumed decisions differ:\n got %+v\nwant %+v", got, want)
	}
	if f.Budget == nil || f.Budget.Spent != 8 {
		t.Errorf("resumed budget = %+v", f.Budget)
	}
}

// TestBudgetStopsWhenConfident: a failing cell and one good cell: the good
// cell runs until the rule is confident, well before the budget.
func TestBudgetStopsWhenConfident(t *testing.T) {
	ok := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	cells := []matrix.Cell{testCell("good"), testCell("crash")}
	scripts := map[string]*script{"good": {probes: ok}, "crash": {probes: ok, console: "Kernel panic - not syncing: boom\n",
		exitDuringProbes: &Exit{Reason: ExitCrashed}}}
	out := t.TempDir()
	f, err := Run(context.Background(), cells, budgetOpts(newFake(scripts), out, 100))
	if err != nil && !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run: %v", err)
	}
	if f.Budget == nil || f.Budget.Stopped != stopConfident || f.Budget.Spent >= 100 {
		t.Fatalf("budget = %+v", f.Budget)
	}
}

// TestBudgetParallel: with two slots the budget is spent exactly, every
// runnable cell runs first, and each run is journalled with its decision.
func TestBudgetParallel(t *testing.T) {
	cells, scripts := budgetCells()
	out := t.TempDir()
	opts := budgetOpts(newFake(scripts), out, 9)
	opts.Parallel = 2
	f, err := Run(context.Background(), cells, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.Budget == nil || f.Budget.Spent != 9 || f.Budget.Stopped != stopBudgetSpent {
		t.Fatalf("budget = %+v", f.Budget)
	}
	ds := decisionsOf(t, out)
	if len(ds) != 9 {
		t.Fatalf("%d decisions, want 9", len(ds))
	}
	first := map[string]bool{}
	for _, d := range ds[:3] {
		first[d.Cell] = d.Reason == "first run"
	}
	if len(first) != 3 || !first["good-a"] || !first["good-b"] || !first["fails"] {
		t.Errorf("first three decisions = %+v, want a first run of each runnable cell", ds[:3])
	}
	if n := len(readResults(t, out).Runs); n != 10 { // 9 runs + the unsupported cell's
		t.Errorf("results.json has %d runs, want 10", n)
	}
}

// TestBudgetTime: a time budget stops starting runs once the next would
// not fit, and says so.
func TestBudgetTime(t *testing.T) {
	cells, scripts := budgetCells()
	fake := newFake(scripts)
	out := t.TempDir()
	opts := budgetOpts(fake, out, 0)
	opts.Budget = &Budget{Time: 300 * time.Millisecond}
	opts.Prober = slowProber{d: 50 * time.Millisecond}
	f, err := Run(context.Background(), cells, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	b := f.Budget
	if b == nil || b.Stopped != stopTimeSpent || b.Spent < 3 || b.Spent > 8 {
		t.Fatalf("budget = %+v; want it stopped by time after the first runs", b)
	}
}
