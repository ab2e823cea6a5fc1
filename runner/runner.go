package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// ResultsName is results.json's file name in the results directory.
const ResultsName = "results.json"

// DefaultRetries is how often an infra-error run is retried.
const DefaultRetries = 2

// Options configure a run of a plan.
type Options struct {
	Provider Provider
	Prober   Prober
	// Console makes a live console scanner per run; nil records the
	// console without analysing it.
	Console NewConsoleScanner
	// Checker checks scratch images after a clean shutdown; nil skips the check.
	Checker Checker
	// Out is the results directory.
	Out string
	// Spec and SpecHash name the matrix spec in results.json.
	Spec, SpecHash string
	// Repeat, Timeout and Soak override the cells' settings when non-zero.
	Repeat  int
	Timeout time.Duration
	Soak    time.Duration
	// ProbesSequential runs a cell's probes one after the other instead of
	// all at once (results.Run.ProbeMode records which).
	ProbesSequential bool
	// PowerCutAfter is how long the IO probe writes at least before the
	// crash-consistency check cuts the power (0: 5s; see crashcheck.go).
	PowerCutAfter time.Duration
	// Parallel caps the number of cells running at once; 0 derives it from
	// the host's cores and memory and each cell's CPUs and memory.
	Parallel int
	// Retries for infra-error runs (negative: none; 0: DefaultRetries).
	Retries int
	// Retain keeps the scratch disks of failed runs.
	Retain bool
	// Progress receives progress events; nil: none.
	Progress Progress
	// Stop, when closed, stops starting runs and tears running ones down
	// gracefully; they stay unfinished in the journal and run on --resume.
	// Cancelling the context passed to Run kills running machines at once.
	Stop <-chan struct{}
	// ShutdownTimeout bounds a clean shutdown (0: 60 s).
	ShutdownTimeout time.Duration
	// Budget, when active, spends that many runs adaptively instead of
	// uniform repeats (budget.go); Repeat is then ignored.
	Budget *Budget
	// Calibrate measures the host's CPU capacity before and after each run
	// (results.Run.Calibration), so reports can compare figures measured
	// under different load.
	Calibrate bool
	// FaultSeed decides the probabilistic faults (results.File.FaultSeed);
	// 0: a random one. A resumed run keeps the seed it started with.
	FaultSeed uint64
	// HostCPUs and HostMemoryMB override the host's resources for the
	// parallelism budget (0: measured).
	HostCPUs, HostMemoryMB int
	// NotSelected are the spec's cells this run leaves out (filtered, in
	// another shard) with their reasons, for results.json's plan; Shard is
	// "i/n" when the cells are one shard of the spec.
	NotSelected []results.PlanCell
	Shard       string
	// Timing seeds the progress estimate with earlier runs' durations
	// (zero: conservative defaults until this run has measured a run).
	Timing Timing
}

// ErrInterrupted is returned (wrapped) when Stop or the context ended the
// run before every cell ran; the results directory can be resumed.
var ErrInterrupted = errors.New("run interrupted; continue it with --resume")

// Run runs every cell of the plan into a new results directory opts.Out,
// which must not hold a journal yet.
func Run(ctx context.Context, cells []matrix.Cell, opts Options) (*results.File, error) {
	if abs, err := filepath.Abs(opts.Out); err == nil {
		opts.Out = abs
	}
	if _, err := os.Stat(filepath.Join(opts.Out, JournalName)); err == nil {
		return nil, fmt.Errorf("%s already holds a run (%s): continue it with --resume or choose another --out", opts.Out, JournalName)
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	host, _ := os.Hostname()
	file := &results.File{
		Schema: results.SchemaVersion, RunID: newRunID(), Spec: opts.Spec, SpecHash: opts.SpecHash,
		Host: host, Provider: opts.Provider.Name(), Started: time.Now().UTC(), Runs: []results.Run{},
		FaultSeed: opts.FaultSeed,
	}
	for file.FaultSeed == 0 {
		file.FaultSeed = mrand.Uint64()
	}
	file.Plan = newPlan(cells, opts)
	j, err := openJournal(filepath.Join(opts.Out, JournalName))
	if err != nil {
		return nil, err
	}
	defer j.Close()
	plan := &journalPlan{Cells: cells, Repeat: opts.Repeat, Soak: opts.Soak, Timeout: opts.Timeout}
	if opts.Budget.Active() {
		plan.Budget = opts.Budget
	}
	if err := j.Append(journalRecord{Type: recHeader, Header: file, Plan: plan}); err != nil {
		return nil, err
	}
	r := &run{opts: opts, cells: cells, file: file, journal: j, done: map[runKey]bool{}}
	return r.execute(ctx)
}

// Resume continues the run in opts.Out with the plan recorded in its
// journal: runs that finished are kept, runs that were in flight when the
// controller died run again (their leftover machines are killed first),
// runs never started are started. Zero Repeat, Soak and Timeout take the
// values the run was started with.
func Resume(ctx context.Context, opts Options) (*results.File, error) {
	if abs, err := filepath.Abs(opts.Out); err == nil {
		opts.Out = abs
	}
	path := filepath.Join(opts.Out, JournalName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", opts.Out, err)
	}
	st, err := readJournal(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", path, err)
	}
	if st.Header.Provider != opts.Provider.Name() {
		return nil, fmt.Errorf("resume %s: it was run with provider %q, not %q", opts.Out, st.Header.Provider, opts.Provider.Name())
	}
	cells := st.Plan.Cells
	if opts.Repeat == 0 {
		opts.Repeat = st.Plan.Repeat
	}
	if opts.Soak == 0 {
		opts.Soak = st.Plan.Soak
	}
	if opts.Timeout == 0 {
		opts.Timeout = st.Plan.Timeout
	}
	if !opts.Budget.Active() {
		opts.Budget = st.Plan.Budget
	}
	for k, p := range st.InFlight {
		if err := killOrphan(p); err != nil {
			return nil, fmt.Errorf("resume %s: leftover machine of %s r%d: %w", opts.Out, k.Cell, k.Repeat, err)
		}
	}
	file := st.Header
	if file.Plan == nil { // a journal from before results.json had a plan
		file.Plan = newPlan(cells, opts)
	}
	file.Finished = time.Time{}
	file.Runs = []results.Run{}
	done := map[runKey]bool{}
	for k, run := range st.Finished {
		file.Runs = append(file.Runs, run)
		done[k] = true
	}
	j, err := openJournal(path)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r := &run{opts: opts, cells: cells, file: file, journal: j, done: done, decisions: st.Decisions}
	return r.execute(ctx)
}

// run is one execution (fresh or resumed) of a plan.
type run struct {
	opts    Options
	cells   []matrix.Cell
	journal *journal

	mu   sync.Mutex
	file *results.File
	done map[runKey]bool
	// unsupported remembers cells found unsupported while running (pending
	// kernel checks, the agent): their other repeats are not prepared again.
	unsupported map[string]string
	// decisions are a budgeted run's journalled decisions (on resume).
	decisions []decision
}

type job struct {
	cell   matrix.Cell
	repeat int
}

func (r *run) execute(ctx context.Context) (*results.File, error) {
	inner := r.opts.Progress
	if inner == nil {
		inner = nopProgress{}
	}
	r.refreshPlan()
	pool := newPool(r.opts)
	eta := r.newETAModel(pool)
	prog := newTracker(inner, eta)
	if r.opts.Budget.Active() {
		defer r.prefetch(ctx, r.cells)()
		return r.executeBudget(ctx, prog, eta, r.decisions)
	}
	var jobs []job
	for _, c := range r.cells {
		if c.Status == matrix.StatusUnsupported {
			if !r.done[runKey{c.ID, 1}] {
				jobs = append(jobs, job{c, 1})
			}
			continue
		}
		n := r.repeats(c)
		for i := 1; i <= n; i++ {
			if !r.done[runKey{c.ID, i}] {
				jobs = append(jobs, job{c, i})
			}
		}
	}
	var vmRuns []runKey
	for _, jb := range jobs {
		if jb.cell.Status != matrix.StatusUnsupported {
			vmRuns = append(vmRuns, runKey{jb.cell.ID, jb.repeat})
		}
	}
	eta.plan(vmRuns)
	prog.Planned(len(jobs)+len(r.done), len(r.done))
	pending := make([]matrix.Cell, 0, len(jobs))
	for _, jb := range jobs {
		pending = append(pending, jb.cell)
	}
	defer r.prefetch(ctx, pending)()
	if err := r.writeResults(); err != nil {
		return nil, err
	}

	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	interrupted := false
	stop := r.opts.Stop
dispatch:
	for _, jb := range jobs {
		if jb.cell.Status == matrix.StatusUnsupported {
			if err := r.finish(r.unsupportedRun(jb)); err != nil {
				return nil, err
			}
			prog.Done(r.lastRun(jb))
			continue
		}
		cost := pool.cost(jb.cell)
		if !pool.acquire(ctx, stop, cost) {
			interrupted = true
			break dispatch
		}
		wg.Add(1)
		go func(jb job) {
			defer wg.Done()
			defer pool.release(cost)
			run, ok := r.runWithRetries(ctx, jb, prog)
			if !ok {
				return // interrupted: stays in flight in the journal
			}
			if err := r.finish(run); err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			prog.Done(run)
		}(jb)
	}
	wg.Wait()
	prog.Close()
	if firstErr != nil {
		return r.file, firstErr
	}
	r.mu.Lock()
	complete := len(r.file.Runs) == len(r.done) && !interrupted && countJobs(r) == len(r.file.Runs)
	r.mu.Unlock()
	if !complete || ctx.Err() != nil {
		return r.file, ErrInterrupted
	}
	return r.complete()
}

// complete stamps the results finished and writes them.
func (r *run) complete() (*results.File, error) {
	r.mu.Lock()
	r.file.Finished = time.Now().UTC()
	r.mu.Unlock()
	if err := r.writeResults(); err != nil {
		return r.file, err
	}
	return r.file, nil
}

// countJobs is the number of runs the plan asks for.
func countJobs(r *run) int {
	n := 0
	for _, c := range r.cells {
		if c.Status == matrix.StatusUnsupported {
			n++
		} else {
			n += r.repeats(c)
		}
	}
	return n
}

func (r *run) repeats(c matrix.Cell) int { return plannedRepeats(r.opts, c) }

// plannedRepeats is the number of runs of a runnable cell: --repeat, else
// the cell's repeats, else 1.
func plannedRepeats(opts Options, c matrix.Cell) int {
	if opts.Repeat > 0 {
		return opts.Repeat
	}
	if c.Settings.Repeats > 0 {
		return c.Settings.Repeats
	}
	return 1
}

func (r *run) lastRun(jb job) results.Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.file.Runs {
		if run.Cell == jb.cell.ID && run.Repeat == jb.repeat {
			return run
		}
	}
	return results.Run{}
}

func (r *run) unsupportedRun(jb job) results.Run {
	now := time.Now().UTC()
	run := baseRun(jb)
	run.Verdict = results.Unsupported
	run.Reason = jb.cell.Reason
	run.Started, run.Finished = now, now
	return run
}

func baseRun(jb job) results.Run {
	return results.Run{
		Cell: jb.cell.ID, Kernel: jb.cell.Kernel.Version, Distro: jb.cell.Distro.Name,
		Docker: jb.cell.Docker.Version, Driver: jb.cell.Driver, Repeat: jb.repeat,
		Findings: []results.Finding{}, Phases: []results.Phase{},
	}
}

// finish journals a final run and rewrites results.json.
func (r *run) finish(run results.Run) error {
	if err := r.journal.Append(journalRecord{Type: recFinished, Cell: run.Cell, Repeat: run.Repeat, Attempt: run.Attempt, Run: &run}); err != nil {
		return err
	}
	r.mu.Lock()
	r.file.Runs = append(r.file.Runs, run)
	r.done[runKey{run.Cell, run.Repeat}] = true
	r.mu.Unlock()
	return r.writeResults()
}

func (r *run) writeResults() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	sort.Slice(r.file.Runs, func(a, b int) bool {
		x, y := r.file.Runs[a], r.file.Runs[b]
		if x.Cell != y.Cell {
			return x.Cell < y.Cell
		}
		return x.Repeat < y.Repeat
	})
	return WriteJSONAtomic(filepath.Join(r.opts.Out, ResultsName), r.file)
}

// runWithRetries runs one (cell, repeat), retrying infra errors. ok is
// false when the run was interrupted and must not be recorded.
func (r *run) runWithRetries(ctx context.Context, jb job, prog Progress) (results.Run, bool) {
	retries := r.opts.Retries
	if retries == 0 {
		retries = DefaultRetries
	}
	if retries < 0 {
		retries = 0
	}
	r.mu.Lock()
	reason, known := r.unsupported[jb.cell.ID]
	r.mu.Unlock()
	if known {
		run := r.unsupportedRun(jb)
		run.Reason = reason
		run.Findings = []results.Finding{{Source: "runner", Category: results.CatUnsupported, Severity: results.SevWarning, Title: "found unsupported by an earlier repeat: " + reason}}
		return run, true
	}
	var last results.Run
	var retried []results.Retry
	var draws []results.FaultDraw
	jb.cell, draws = drawFaults(r.file.FaultSeed, jb.cell, jb.repeat)
	var cal *calibrator
	if r.opts.Calibrate {
		cal = startCalibrator()
	}
	for attempt := 1; attempt <= retries+1; attempt++ {
		run, ok := r.attempt(ctx, jb, attempt, prog)
		if !ok {
			return run, false
		}
		run.Retried = retried
		run.FaultDraws = draws
		last = run
		if run.Verdict == results.Unsupported {
			r.mu.Lock()
			if r.unsupported == nil {
				r.unsupported = map[string]string{}
			}
			r.unsupported[jb.cell.ID] = run.Reason
			r.mu.Unlock()
		}
		if run.Verdict != results.InfraError {
			break
		}
		retried = append(retried, results.Retry{Attempt: attempt, Reason: run.Reason})
	}
	if cal != nil {
		last.Calibration = cal.finish()
	}
	return last, true
}

// RunDir is the artifact directory of a run, relative to the results directory.
func RunDir(cell string, repeat int) string {
	return filepath.Join("runs", safeName(cell), "r"+strconv.Itoa(repeat))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._+-]`)

func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if s == "" || s == "." || s == ".." {
		return "_" + s
	}
	return s
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// pool is the parallelism budget: a count limit plus the host's CPUs and
// memory, each running cell holding its own CPUs and memory.
type pool struct {
	mu               sync.Mutex
	maxCount, count  int
	cpus, mem        int
	usedCPU, usedMem int
	released         chan struct{}
}

type cost struct{ cpus, mem int }

func newPool(o Options) *pool {
	cpus := o.HostCPUs
	if cpus == 0 {
		cpus = runtime.NumCPU()
	}
	mem := o.HostMemoryMB
	if mem == 0 {
		mem = HostMemoryMB()
	}
	return &pool{maxCount: o.Parallel, cpus: cpus, mem: mem, released: make(chan struct{}, 1)}
}

func (p *pool) cost(c matrix.Cell) cost {
	cp := max(c.Settings.CPUs, 1)
	return cost{cpus: min(cp, p.cpus), mem: min(c.Settings.MemoryMB, p.mem)}
}

// slots is how many cells of cost c run at once.
func (p *pool) slots(c cost) int {
	n := p.maxCount
	if n == 0 {
		n = p.cpus / max(c.cpus, 1)
	}
	if c.mem > 0 {
		n = min(n, p.mem/c.mem)
	}
	return max(n, 1)
}

// acquire waits until c fits; false if stop or ctx ended first. A cell
// always fits into an empty pool.
func (p *pool) acquire(ctx context.Context, stop <-chan struct{}, c cost) bool {
	for {
		select {
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		default:
		}
		p.mu.Lock()
		fits := p.count == 0 || ((p.maxCount == 0 || p.count < p.maxCount) &&
			(p.maxCount > 0 || p.usedCPU+c.cpus <= p.cpus) && p.usedMem+c.mem <= p.mem)
		if fits {
			p.count++
			p.usedCPU += c.cpus
			p.usedMem += c.mem
			p.mu.Unlock()
			return true
		}
		p.mu.Unlock()
		select {
		case <-p.released:
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (p *pool) release(c cost) {
	p.mu.Lock()
	p.count--
	p.usedCPU -= c.cpus
	p.usedMem -= c.mem
	p.mu.Unlock()
	select {
	case p.released <- struct{}{}:
	default:
	}
}

// HostMemoryMB is the memory cells may use at once when Options.HostMemoryMB
// is 0: 80 % of what the host has available now.
func HostMemoryMB() int { return hostMemAvailableMB() * 8 / 10 }

// hostMemAvailableMB reads MemAvailable from /proc/meminfo (4096 if unknown).
func hostMemAvailableMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 4096
	}
	var kb int
	for _, line := range splitLines(string(b)) {
		if _, err := fmt.Sscanf(line, "MemAvailable: %d kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 4096
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
