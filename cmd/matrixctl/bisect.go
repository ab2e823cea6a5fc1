package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/bisect"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// bisectFile is the bisection's own record in its directory: what was
// asked (enough to resume it) and, once finished, the answer.
const bisectFile = "bisect.json"

type bisectRecord struct {
	Axis     string            `json:"axis"`
	Cell     matrix.Cell       `json:"cell"`
	Versions []images.Release  `json:"versions"`
	Config   bisect.Config     `json:"config"`
	Inject   *bisect.Injection `json:"inject,omitempty"`
	Retries  int               `json:"retries"`
	Started  time.Time         `json:"started"`
	Result   *bisect.Result    `json:"result,omitempty"`
	Error    string            `json:"error,omitempty"`
}

type bisectFlags struct {
	sel        cellSelection
	axis       string
	good, bad  string
	badVerdict string
	confidence float64
	calibrate  int
	maxRuns    int
	resume     string
	format     string
	retries    int
	progress   string
	inject     bisect.Injection
}

func newBisectCommand(g *globalFlags, streams Streams) *cobra.Command {
	var f bisectFlags
	cmd := &cobra.Command{
		Use:   "bisect",
		Short: "find the release that broke a cell: bisect its kernel line or its docker.io builds",
		Long: `bisect takes one cell of the plan (-f; pick it with --cell or the axis filters) and the
Debian kernel releases of its line between --good and --bad (the linux-image packages of the
cell's kernel suite, ordered by Debian version rules), and boots the cell on them in bisection
order until it finds the first bad and the last good release. --axis docker does the same
with the docker.io builds of the cell's suite (its main, -updates and -security archives:
--good 20.10.5+dfsg1-1+deb11u2); a cell's docker.io comes only from its own suite.

Flakes: the bad release is run until it shows the failure and has --calibrate counted runs;
its failure rate p sets the pass streak a release needs to be called good: (1-p)^n <= 1 -
--confidence, at most --max-runs runs. One run with the bad verdict makes a release bad.
infra-error runs are retried by the runner and never counted; a release that fails otherwise,
or cannot be judged in --max-runs runs, is skipped (as git bisect skip), and the answer names
the range.

Every run is a one-cell run with its own results under DIR/runs/<cell>/r<n>/; DIR/bisect.json
holds the request and the answer. Ctrl-C (or SIGKILL, or a power cut) and --resume DIR: no
finished run is redone.

--inject FAULT --inject-from RELEASE is a test fault for proving a bisection on real cells:
from RELEASE on, each run gets FAULT (e.g. sysrq-panic) with --inject-probability, decided
from --inject-seed, the release and the run number (recorded in bisect.json, so a resume
makes the same choices).

Exit codes: 0 the boundary was found, 1 it was not (an end did not behave as stated),
2 usage error, 3 infrastructure error, 130 interrupted.`,
		Example: `  # which 6.1 release of bookworm broke overlay2 on debian12?
  matrixctl bisect --kernel 6.1 --distro debian12 --driver overlay2 --good 6.1.0-47 --bad 6.1.0-57

  # prove it: a sysrq panic from 6.1.0-52 on, in 30 % of the runs
  matrixctl bisect --cell k6.1-debian12-docker20.10.24-overlay2 --good 6.1.0-47 --bad 6.1.0-57 \
      --inject sysrq-panic --inject-from 6.1.0-52 --inject-probability 0.3 --out bisect-6.1

  # which docker.io build of bullseye broke it?
  matrixctl bisect --distro debian11 --kernel 5.10 --driver overlay2 --axis docker \
      --good 20.10.5+dfsg1-1+deb11u2 --bad 20.10.5+dfsg1-1+deb11u4

  # continue an interrupted bisection
  matrixctl bisect --resume bisect-6.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBisect(cmd.Context(), g, streams, cmd, &f)
		},
	}
	f.sel.addFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.axis, "axis", "kernel", "the axis to bisect: kernel (the linux-image releases of the cell's line) or docker (the docker.io builds of its suite)")
	fl.StringVar(&f.good, "good", "", "a release known to be good: a linux-image package or its ABI (6.1.0-47)")
	fl.StringVar(&f.bad, "bad", "", "a release known to be bad (default: the newest of the line)")
	fl.StringVar(&f.badVerdict, "bad-verdict", "", "the verdict bisected for (default: the bad release's first failing verdict)")
	fl.Float64Var(&f.confidence, "confidence", 0.95, "confidence a good judgement must reach")
	fl.IntVar(&f.calibrate, "calibrate", 3, "counted runs of the bad release that measure its failure rate")
	fl.IntVar(&f.maxRuns, "max-runs", 10, "runs of one release at most")
	fl.StringVar(&f.resume, "resume", "", "continue the bisection in this directory")
	fl.StringVar(&f.format, "format", "text", "answer format: text or json")
	fl.IntVar(&f.retries, "retries", runner.DefaultRetries, "retries of a run that ended in infra-error")
	fl.StringVar(&f.progress, "progress", "lines", "progress of each run: lines or none")
	fl.StringVar(&f.inject.Fault, "inject", "", "test fault injected from --inject-from on (one of "+strings.Join(matrix.Faults(), ", ")+")")
	fl.StringVar(&f.inject.From, "inject-from", "", "the first release that gets the test fault")
	fl.Float64Var(&f.inject.Probability, "inject-probability", 1, "probability of the test fault per run")
	fl.Uint64Var(&f.inject.Seed, "inject-seed", 1, "seed of the test fault's coin")
	return cmd
}

// bisectAxis is what bisect needs of an axis: its releases for the cell,
// their names, how a typed name reads, and the cell on a release.
type bisectAxis struct {
	what  string
	list  func(context.Context, *images.Cache) ([]images.Release, error)
	name  func(images.Release) string
	parse func(string) string
	cell  func(matrix.Cell, images.Release) matrix.Cell
}

func axisOf(axis string, cell matrix.Cell) (*bisectAxis, error) {
	switch axis {
	case "kernel":
		if cell.Kernel.Suite == "" {
			return nil, usageErrorf("cell %s: its kernel is not a Debian package (suite unset), so it has no releases to bisect", cell.ID)
		}
		return &bisectAxis{
			what: fmt.Sprintf("%s release of %s", cell.Kernel.Version, cell.Kernel.Suite),
			list: func(ctx context.Context, c *images.Cache) ([]images.Release, error) {
				return c.KernelPackages(ctx, cell.Kernel.Version, cell.Kernel.Suite)
			},
			name:  func(r images.Release) string { return r.Package },
			parse: kernelPackageName,
			cell:  func(c matrix.Cell, r images.Release) matrix.Cell { return bisect.ReleaseCell(c, r.Package) },
		}, nil
	case "docker":
		pkg, suite := cell.Docker.Package, cell.Docker.Suite
		if pkg == "" {
			pkg = images.DefaultDockerPackage
		}
		if suite == "" {
			suite = cell.Distro.Suite
		}
		return &bisectAxis{
			what: fmt.Sprintf("%s build of %s", pkg, suite),
			list: func(ctx context.Context, c *images.Cache) ([]images.Release, error) {
				return c.PackageReleases(ctx, pkg, suite)
			},
			name:  func(r images.Release) string { return r.Version },
			parse: func(s string) string { return s },
			cell:  func(c matrix.Cell, r images.Release) matrix.Cell { return bisect.DockerCell(c, r.Version) },
		}, nil
	}
	return nil, usageErrorf("--axis %q: want kernel or docker", axis)
}

// kernelPackageName turns a release as typed (6.1.0-47, linux-image-6.1.0-47-amd64) into its package name.
func kernelPackageName(s string) string {
	if strings.HasPrefix(s, "linux-image-") {
		return s
	}
	return "linux-image-" + s + "-amd64"
}

func runBisect(ctx context.Context, g *globalFlags, streams Streams, cmd *cobra.Command, f *bisectFlags) error {
	if f.format != "text" && f.format != "json" {
		return usageErrorf("--format %q: want text or json", f.format)
	}
	if f.progress != "lines" && f.progress != "none" {
		return usageErrorf("--progress %q: want lines or none", f.progress)
	}
	cache, err := images.New(g.Cache)
	if err != nil {
		return withExit(ExitInfra, fmt.Errorf("cache %s: %w", g.Cache, err))
	}
	out := g.Out
	var rec *bisectRecord
	if f.resume != "" {
		out = f.resume
		if rec, err = readBisectRecord(out); err != nil {
			return usageErrorf("--resume %s: %v", out, err)
		}
	} else {
		if rec, err = newBisectRecord(ctx, g, cache, cmd, f); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(out, bisectFile)); err == nil {
			return usageErrorf("--out %s already holds a bisection: continue it with --resume %s or choose another --out", out, out)
		}
		if err := writeBisectRecord(out, rec); err != nil {
			return withExit(ExitInfra, err)
		}
	}

	hardCtx, stop, release := interruptible(ctx, streams.ErrOut)
	defer release()
	opts := runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: g.Cache},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(g.Cache, "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Retries: rec.Retries, Stop: stop, Parallel: 1,
		Spec: "bisect " + rec.Cell.ID,
	}
	if rec.Retries == 0 {
		opts.Retries = -1
	}
	ex := &bisect.Executor{Dir: out, Options: opts, Inject: rec.Inject}
	ax, err := axisOf(rec.Axis, rec.Cell)
	if err != nil {
		return usageErrorf("--resume %s: %v", out, err)
	}
	for _, k := range rec.Versions {
		ex.Cells = append(ex.Cells, ax.cell(rec.Cell, k))
		ex.Releases = append(ex.Releases, ax.name(k))
	}
	if f.progress == "lines" {
		ex.OnRun = func(cell string, n int, v results.Verdict, reused bool) {
			how := ""
			if reused {
				how = " (recorded)"
			}
			fmt.Fprintf(streams.ErrOut, "bisect: %s r%d: %s%s\n", cell, n, v, how)
		}
	}
	res, err := bisect.Search(hardCtx, rec.Config, ex.Run)
	if err == nil {
		if res.Boundary, err = ex.Boundary(res); err != nil {
			err = fmt.Errorf("evidence at the boundary: %w", err)
		}
	}
	rec.Result = res
	rec.Error = ""
	if err != nil {
		rec.Error = err.Error()
	}
	if werr := writeBisectRecord(out, rec); werr != nil {
		return withExit(ExitInfra, werr)
	}
	if werr := writeBisectPage(out, rec, ex); werr != nil {
		return withExit(ExitInfra, werr)
	}
	if errors.Is(err, runner.ErrInterrupted) || hardCtx.Err() != nil {
		fmt.Fprintf(streams.ErrOut, "matrixctl: bisection interrupted; continue it with: matrixctl bisect --resume %s\n", out)
		return &silentExit{code: ExitAborted}
	}
	if f.format == "json" {
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rec); jerr != nil {
			return jerr
		}
	} else {
		printBisect(streams.Out, rec, out)
	}
	if err != nil {
		if strings.Contains(err.Error(), "is not good") || strings.Contains(err.Error(), "never showed") {
			return withExit(ExitFailed, err)
		}
		return withExit(ExitInfra, err)
	}
	return nil
}

// newBisectRecord resolves the cell and the releases between --good and --bad.
func newBisectRecord(ctx context.Context, g *globalFlags, cache *images.Cache, cmd *cobra.Command, f *bisectFlags) (*bisectRecord, error) {
	if f.axis != "kernel" && f.axis != "docker" {
		return nil, usageErrorf("--axis %q: want kernel or docker", f.axis)
	}
	if f.good == "" {
		return nil, usageErrorf("--good: name a release known to be good (e.g. 6.1.0-47)")
	}
	if f.confidence <= 0 || f.confidence >= 1 || f.calibrate < 1 || f.maxRuns < 1 || f.retries < 0 {
		return nil, usageErrorf("--confidence must lie in (0, 1); --calibrate and --max-runs must be at least 1; --retries not negative")
	}
	if f.badVerdict != "" && !validVerdict(results.Verdict(f.badVerdict)) {
		return nil, usageErrorf("--bad-verdict %q: not a verdict (%s)", f.badVerdict, verdictList())
	}
	cells, err := f.sel.load(g.File)
	if err != nil {
		return nil, err
	}
	var runnable []matrix.Cell
	for _, c := range cells {
		if c.Status == matrix.StatusRunnable {
			runnable = append(runnable, c)
		}
	}
	if len(runnable) != 1 {
		var ids []string
		for _, c := range runnable {
			ids = append(ids, c.ID)
		}
		return nil, usageErrorf("bisect needs exactly one runnable cell of %s; the filters select %d: %s", g.File, len(runnable), strings.Join(ids, ", "))
	}
	cell := runnable[0]
	ax, err := axisOf(f.axis, cell)
	if err != nil {
		return nil, err
	}
	all, err := ax.list(ctx, cache)
	if err != nil {
		return nil, withExit(ExitInfra, err)
	}
	good, bad := ax.parse(f.good), ""
	if f.bad != "" {
		bad = ax.parse(f.bad)
	} else if len(all) > 0 {
		bad = ax.name(all[len(all)-1])
	}
	gi, bi := -1, -1
	var names []string
	for i, k := range all {
		names = append(names, ax.name(k))
		switch ax.name(k) {
		case good:
			gi = i
		case bad:
			bi = i
		}
	}
	switch {
	case gi < 0:
		return nil, usageErrorf("--good %s: no such %s (there are %s)", f.good, ax.what, strings.Join(names, ", "))
	case bi < 0:
		return nil, usageErrorf("--bad %s: no such %s (there are %s)", f.bad, ax.what, strings.Join(names, ", "))
	case gi >= bi:
		return nil, usageErrorf("--good %s is not older than --bad %s", names[gi], names[bi])
	}
	rec := &bisectRecord{Axis: f.axis, Cell: cell, Versions: all[gi : bi+1], Retries: f.retries, Started: time.Now().UTC(),
		Config: bisect.Config{Bad: results.Verdict(f.badVerdict), Confidence: f.confidence, Calibrate: f.calibrate, MaxRuns: f.maxRuns}}
	for _, k := range rec.Versions {
		rec.Config.Versions = append(rec.Config.Versions, ax.name(k))
	}
	if f.inject.Fault != "" || cmd.Flags().Changed("inject-from") {
		in := f.inject
		if !contains(matrix.Faults(), in.Fault) {
			return nil, usageErrorf("--inject %q: want one of %s", in.Fault, strings.Join(matrix.Faults(), ", "))
		}
		in.From = ax.parse(in.From)
		if !contains(rec.Config.Versions, in.From) {
			return nil, usageErrorf("--inject-from %s: not a release between --good and --bad", f.inject.From)
		}
		if in.Probability <= 0 || in.Probability > 1 {
			return nil, usageErrorf("--inject-probability %v: want a probability in (0, 1]", in.Probability)
		}
		rec.Inject = &in
	}
	return rec, nil
}

func validVerdict(v results.Verdict) bool {
	for _, x := range results.VerdictOrder {
		if x == v {
			return true
		}
	}
	return false
}

func verdictList() string {
	var vs []string
	for _, v := range results.VerdictOrder {
		vs = append(vs, string(v))
	}
	return strings.Join(vs, ", ")
}

func readBisectRecord(dir string) (*bisectRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, bisectFile))
	if err != nil {
		return nil, err
	}
	var rec bisectRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, bisectFile), err)
	}
	if len(rec.Versions) < 2 || len(rec.Config.Versions) != len(rec.Versions) {
		return nil, fmt.Errorf("%s: no releases recorded", filepath.Join(dir, bisectFile))
	}
	return &rec, nil
}

func writeBisectRecord(dir string, rec *bisectRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return runner.WriteJSONAtomic(filepath.Join(dir, bisectFile), rec)
}

// writeBisectPage writes DIR/bisect.html: the answer, the steps and a link
// to every run's results.
func writeBisectPage(dir string, rec *bisectRecord, ex *bisect.Executor) error {
	p := &reports.BisectPage{Axis: rec.Axis, Cell: rec.Cell.ID, Releases: rec.Config.Versions, Result: rec.Result, Error: rec.Error}
	if in := rec.Inject; in != nil {
		p.TestFault = fmt.Sprintf("%s from %s, probability %.2f, seed %d", in.Fault, in.From, in.Probability, in.Seed)
	}
	if res := rec.Result; res != nil {
		for _, st := range res.Steps {
			var dirs []string
			for n := 1; n <= len(st.Verdicts); n++ {
				rel, err := filepath.Rel(dir, ex.RunDir(ex.Cells[st.Index].ID, n))
				if err != nil {
					return err
				}
				dirs = append(dirs, filepath.ToSlash(rel)+"/")
			}
			p.RunDirs = append(p.RunDirs, dirs)
		}
	}
	return writeFileAtomic(filepath.Join(dir, "bisect.html"), func(w io.Writer) error { return reports.WriteBisectHTML(w, p) })
}

func printBisect(w io.Writer, rec *bisectRecord, dir string) {
	res := rec.Result
	fmt.Fprintf(w, "bisect %s of %s: %d releases, %s .. %s\n", rec.Axis, rec.Cell.ID, len(rec.Config.Versions),
		rec.Config.Versions[0], rec.Config.Versions[len(rec.Config.Versions)-1])
	if rec.Inject != nil {
		fmt.Fprintf(w, "test fault: %s from %s, probability %.2f, seed %d\n", rec.Inject.Fault, rec.Inject.From, rec.Inject.Probability, rec.Inject.Seed)
	}
	if res == nil {
		return
	}
	for i, st := range res.Steps {
		vs := make([]string, len(st.Verdicts))
		for j, v := range st.Verdicts {
			vs[j] = string(v)
		}
		fmt.Fprintf(w, "  step %d: %-32s %-4s %s [%s]\n", i+1, st.Version, st.Judgement, st.Why, strings.Join(vs, " "))
	}
	if rec.Error != "" {
		fmt.Fprintf(w, "no answer: %s (%d VM-runs, %d steps; runs in %s)\n", rec.Error, res.Runs, len(res.Steps), dir)
		return
	}
	fmt.Fprintf(w, "bad verdict %s, failure rate of the bad release %.2f: a good release needed %d passes in a row (confidence %.3f)\n",
		res.Bad, res.FailRate, res.Streak, res.Confidence)
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "first bad: one of %s, %s (skipped releases could not be judged); last good: %s\n",
			strings.Join(res.Skipped, ", "), res.FirstBad, res.LastGood)
	} else {
		fmt.Fprintf(w, "first bad: %s\nlast good: %s\n", res.FirstBad, res.LastGood)
	}
	if b := res.Boundary; b != nil {
		fmt.Fprintf(w, "evidence at the boundary:\n")
		printBisectRun(w, "bad ", b.Bad)
		var quiet []string
		for _, r := range b.Good {
			if len(r.Findings) > 0 || r.Verdict != results.Pass {
				printBisectRun(w, "good", r)
			} else {
				quiet = append(quiet, fmt.Sprintf("r%d", r.N))
			}
		}
		if len(quiet) > 0 && len(b.Good) > 0 {
			fmt.Fprintf(w, "  good %s: %s passed with no finding\n", b.Good[0].Release, strings.Join(quiet, " "))
		}
	}
	fmt.Fprintf(w, "%d steps, %d VM-runs; runs in %s, page %s\n", len(res.Steps), res.Runs, filepath.Join(dir, "runs"), filepath.Join(dir, "bisect.html"))
}

// printBisectRun prints one run of the boundary: its verdict and reason,
// and the first lines of its top findings' excerpts (console text is data:
// control bytes were dropped by the scanner, and it is indented here).
func printBisectRun(w io.Writer, label string, r results.BisectRun) {
	fmt.Fprintf(w, "  %s %s r%d: %s", label, r.Release, r.N, r.Verdict)
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", r.Reason)
	}
	fmt.Fprintf(w, " (%s)\n", r.Dir)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "       [%s] %s: %s\n", f.Severity, f.Category, f.Title)
		lines := strings.Split(strings.TrimRight(f.Excerpt, "\n"), "\n")
		for i, l := range lines {
			if i == 6 {
				fmt.Fprintf(w, "         … (%d more lines)\n", len(lines)-i)
				break
			}
			if l != "" {
				fmt.Fprintf(w, "         | %s\n", l)
			}
		}
	}
}
