package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/reports/history"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/local"
	"github.com/matrixctl/matrixctl/runner/qemu"
	vagrantprov "github.com/matrixctl/matrixctl/runner/vagrant"
)

type runFlags struct {
	sel       cellSelection
	provider  string
	repeat    int
	parallel  string
	firstLook bool
	timeout   time.Duration
	soak      time.Duration
	resume    string
	accel     string
	retain    bool
	retries   int
	probes    []string
	intensity int
	history   string
	progress  string
	faultSeed uint64
	budget    string

	probesSequential bool
}

func newRunCommand(g *globalFlags, streams Streams) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "run the matrix: boot every runnable cell, load it, judge it",
		Long: `run boots every runnable cell of the plan (-f, default matrix.yaml; the same filters as
plan) in its own VM, waits for dockerd, runs the probes for the soak duration while the serial
console is analysed live, shuts the VM down, checks the scratch filesystem from the host and
records one verdict per run of a cell:

  pass · kernel-crash · data-loss · fs-corruption · hang · docker-failure · probe-failure
  unsupported (never booted; has a reason) · infra-error (the harness failed; retried)

Results go to --out DIR: results.json, journal.jsonl and runs/<cell>/r<repeat>/ with the
console log, agent and dockerd logs, probe records, checker output and QEMU command line.
A run killed in any way (Ctrl-C, SIGKILL, power loss) continues with --resume DIR: finished
runs are kept, interrupted ones run again, leftover VMs are killed.

--provider local runs the probes against this host's own dockerd (DOCKER_HOST or the
default socket) as one cell: no VM, no console, no filesystem check. The spec file is not
read; --probes, --soak, --repeat and --timeout apply.

Ctrl-C stops starting cells and shuts running ones down (the directory stays resumable);
a second Ctrl-C kills them at once.

Exit codes: 0 every runnable cell passed, 1 some cell failed, 2 usage or spec error,
3 infrastructure error (no failure, but some run could not be judged), 130 interrupted.`,
		Example: `  # the whole matrix, results in ./results
  matrixctl run

  # a first look in minutes: every kernel line, distro and driver once, IO probe, 10 s soak
  matrixctl run --first-look

  # only the aufs cells of kernel 3.16, three times each, two at a time
  matrixctl run --kernel 3.16 --driver aufs --repeat 3 --parallel 2

  # qualify the machine you stand on: its own dockerd, 10 s per probe
  matrixctl run --provider local --soak 10s --out host-results

  # continue a run that was interrupted or killed
  matrixctl run --resume results`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRun(cmd.Context(), g, streams, cmd, &f)
		},
	}
	f.sel.addFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.provider, "provider", "qemu", "where cells run: qemu (a VM per cell), vagrant (a Vagrant + libvirt box per cell) or local (this host's dockerd)")
	fl.IntVar(&f.repeat, "repeat", 0, "runs per cell (default: the spec's repeats)")
	fl.StringVar(&f.parallel, "parallel", "auto", "cells at once: a number, or auto: as many as fit the host's memory and its cores, given each cell's CPUs and memory (one vCPU per core under TCG, two under KVM)")
	fl.BoolVar(&f.firstLook, "first-look", false, "a quick first run: only the fewest runnable cells that touch every kernel line, distro and driver, once each, with the IO probe only, 1 vCPU and 1 GiB each, soak 10s unless --soak is given")
	fl.DurationVar(&f.timeout, "timeout", 0, "per-run timeout; a run that exceeds it is a hang (default: the spec's timeout)")
	fl.DurationVar(&f.soak, "soak", 0, "how long each probe's workload runs (default: the spec's soak)")
	fl.StringVar(&f.resume, "resume", "", "continue the run in this results directory")
	fl.StringVar(&f.accel, "accel", "auto", "QEMU accelerator: auto (KVM, falling back to TCG when a KVM guest makes no progress; decided once per host and remembered in the cache), recheck (auto, but try KVM again and remember the new outcome), kvm or tcg")
	fl.BoolVar(&f.retain, "retain", false, "keep the scratch disks of runs that did not pass (runs/<cell>/r<n>/scratch.img)")
	fl.IntVar(&f.retries, "retries", runner.DefaultRetries, "retries of a run that ended in infra-error")
	fl.StringSliceVar(&f.probes, "probes", nil, "with --provider local: probes to run (default io,net,churn)")
	fl.BoolVar(&f.probesSequential, "probes-sequential", false, "run a cell's probes one after the other instead of all at once (results.json: probe_mode)")
	fl.StringVar(&f.budget, "budget", "", "spend N VM-runs (or a duration, e.g. 2h) adaptively instead of uniform repeats: each run goes where the ranking is still uncertain")
	fl.Uint64Var(&f.faultSeed, "fault-seed", 0, "seed of the probabilistic faults' per-run decisions, to replay a run's (default: random, recorded in results.json)")
	fl.IntVar(&f.intensity, "intensity", 0, "probe intensity 1-10 (default 1)")
	fl.StringVar(&f.history, "history", "", "history database to append results to (default <cache>/history.db; none to disable)")
	fl.StringVar(&f.progress, "progress", "auto", "progress output, with an ETA from the phase times measured so far (seeded by the history) or what is left of a --budget: auto (bars on a terminal, lines otherwise), bars, lines or none")
	_ = cmd.RegisterFlagCompletionFunc("provider", cobra.FixedCompletions([]string{"qemu", "vagrant", "local"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("accel", cobra.FixedCompletions([]string{"auto", "recheck", "kvm", "tcg"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runRun(ctx context.Context, g *globalFlags, streams Streams, cmd *cobra.Command, f *runFlags) error {
	parallel := 0
	if f.parallel != "auto" {
		n, err := strconv.Atoi(f.parallel)
		if err != nil || n < 1 {
			return usageErrorf("--parallel %q: want auto or a number of cells, at least 1", f.parallel)
		}
		parallel = n
	}
	if f.repeat < 0 || f.timeout < 0 || f.soak < 0 || f.retries < 0 {
		return usageErrorf("--repeat, --timeout, --soak and --retries must not be negative")
	}
	if f.intensity < 0 || f.intensity > 10 {
		return usageErrorf("--intensity %d: want 1-10", f.intensity)
	}
	budget, err := parseBudget(f.budget)
	if err != nil {
		return withExit(ExitUsage, err)
	}
	if budget != nil && f.repeat > 0 {
		return usageErrorf("--budget and --repeat exclude each other: a budget decides each cell's repeats")
	}
	if budget != nil && f.resume != "" {
		return usageErrorf("--resume continues the recorded budget: --budget does not apply")
	}
	accel := qemu.Accel(f.accel)
	switch accel {
	case qemu.AccelAuto, qemu.AccelRecheck, qemu.AccelKVM, qemu.AccelTCG:
	default:
		return usageErrorf("--accel %q: want auto, recheck, kvm or tcg", f.accel)
	}
	out := g.Out
	if f.resume != "" {
		if cmd.Flags().Changed("out") && filepath.Clean(g.Out) != filepath.Clean(f.resume) {
			return usageErrorf("--resume %s and --out %s name different directories", f.resume, g.Out)
		}
		out = f.resume
		recorded, err := runner.RecordedProvider(out)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if cmd.Flags().Changed("provider") && f.provider != recorded {
			return usageErrorf("--resume %s: it was run with --provider %s, not %s", out, recorded, f.provider)
		}
		f.provider = recorded
	}

	opts := runner.Options{
		Out: out, Repeat: f.repeat, Parallel: parallel, Timeout: f.timeout, Soak: f.soak, ProbesSequential: f.probesSequential,
		Retain: f.retain, Retries: f.retries, FaultSeed: f.faultSeed, Budget: budget,
		Prober:  runner.ProbesProber{Intensity: f.intensity, Workdir: filepath.Join(g.Cache, "probes")},
		Console: runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
	}
	if f.retries == 0 {
		opts.Retries = -1
	}
	var cells []matrix.Cell
	switch f.provider {
	case "local":
		if len(f.probes) > 0 && f.sel.any() {
			return usageErrorf("--provider local runs this host as one cell: cell filters do not apply")
		}
		p := &local.Provider{}
		opts.Provider = p
		if f.resume == "" {
			settings := matrix.DefaultSettings()
			settings.Soak = 5 * time.Second
			if len(f.probes) > 0 {
				for _, name := range f.probes {
					if !contains(matrix.Probes(), name) {
						return usageErrorf("--probes %s: want some of %s", name, strings.Join(matrix.Probes(), ","))
					}
				}
				settings.Probes = f.probes
			}
			c, err := local.HostCell(ctx, p, settings)
			if err != nil {
				return withExit(ExitInfra, err)
			}
			cells = []matrix.Cell{c}
			opts.Spec = "local host"
		}
	case "qemu", "vagrant":
		if len(f.probes) > 0 {
			return usageErrorf("--probes applies to --provider local; the spec selects a cell's probes")
		}
		cache, err := images.New(g.Cache)
		if err != nil {
			return withExit(ExitInfra, fmt.Errorf("cache %s: %w", g.Cache, err))
		}
		defer cache.Close()
		warnLowDisk(streams.ErrOut, g.Cache)
		opts.Calibrate = true
		if f.provider == "qemu" {
			opts.Provider = &qemu.Provider{Cache: cache, CacheDir: g.Cache, Accel: accel}
			if parallel == 0 {
				var why string
				opts.HostCPUs, why = qemu.VCPUCapacity(g.Cache, accel, runtime.NumCPU())
				fmt.Fprintf(streams.ErrOut, "matrixctl: --parallel auto: room for %d vCPUs (%d cores, %s) within %d MiB of available memory\n",
					opts.HostCPUs, runtime.NumCPU(), why, runner.HostMemoryMB())
			}
		} else if opts.Provider, err = vagrantProvider(ctx, cache, streams, f.resume); err != nil {
			return err
		}
		if f.resume == "" {
			if cells, opts.NotSelected, err = f.sel.selectCells(g.File); err != nil {
				return err
			}
			if f.firstLook {
				picked := matrix.FirstLook(cells)
				opts.NotSelected = append(opts.NotSelected, leftByFirstLook(cells, picked)...)
				cells = picked
			}
			opts.Shard = f.sel.shard
			if b, err := os.ReadFile(g.File); err == nil {
				sum := sha256.Sum256(b)
				opts.Spec, opts.SpecHash = g.File, hex.EncodeToString(sum[:])
			}
		}
	default:
		return usageErrorf("--provider %q: want qemu, vagrant or local", f.provider)
	}
	if f.resume != "" && f.sel.any() {
		return usageErrorf("--resume continues the recorded plan: filters do not apply")
	}

	prog, err := progressFor(f.progress, streams.ErrOut)
	if err != nil {
		return err
	}
	opts.Progress = prog
	if prog != nil {
		opts.Timing = pastTiming(ctx, g, f, opts.Provider.Name(), streams.ErrOut)
	}

	hardCtx, stop, release := interruptible(ctx, streams.ErrOut)
	defer release()
	opts.Stop = stop

	var file *results.File
	if f.resume != "" {
		file, err = runner.Resume(hardCtx, opts)
	} else {
		file, err = runner.Run(hardCtx, cells, opts)
	}
	if err != nil && !errors.Is(err, runner.ErrInterrupted) {
		return withExit(ExitInfra, err)
	}
	interrupted := err != nil
	code := summarize(streams.Out, file, out)
	if interrupted {
		fmt.Fprintf(streams.ErrOut, "matrixctl: run interrupted; continue it with: matrixctl run --resume %s\n", out)
		return &silentExit{code: ExitAborted}
	}
	appendHistory(ctx, g, f, streams.ErrOut, file)
	if code != ExitOK {
		return &silentExit{code: code}
	}
	return nil
}

// interruptible wires Ctrl-C (or SIGTERM) the way every long command
// takes it: the first closes stop (start nothing new, shut running cells
// down, stay resumable), the second cancels the returned context (kill them
// at once). release undoes it.
func interruptible(ctx context.Context, errOut io.Writer) (hard context.Context, stop <-chan struct{}, release func()) {
	hardCtx, hardCancel := context.WithCancel(ctx)
	stopCh := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-hardCtx.Done():
			return
		}
		fmt.Fprintf(errOut, "matrixctl: interrupted: shutting running cells down (Ctrl-C again kills them)\n")
		close(stopCh)
		select {
		case <-sigs:
			fmt.Fprintf(errOut, "matrixctl: killing running cells\n")
			hardCancel()
		case <-hardCtx.Done():
		}
	}()
	return hardCtx, stopCh, func() { signal.Stop(sigs); hardCancel() }
}

func (s *cellSelection) any() bool {
	return len(s.kernel)+len(s.distro)+len(s.docker)+len(s.driver)+len(s.cell) > 0 || s.shard != ""
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func progressFor(mode string, w io.Writer) (runner.Progress, error) {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = runner.IsTerminal(f.Fd())
	}
	switch mode {
	case "auto":
		if tty {
			return runner.NewTTYProgress(w), nil
		}
		return runner.NewPlainProgress(w), nil
	case "bars":
		return runner.NewTTYProgress(w), nil
	case "lines":
		return runner.NewPlainProgress(w), nil
	case "none":
		return nil, nil
	}
	return nil, usageErrorf("--progress %q: want auto, bars, lines or none", mode)
}

// failing verdicts make the exit code 1.
var failing = map[results.Verdict]bool{
	results.KernelCrash: true, results.DataLoss: true, results.FSCorruption: true, results.Hang: true,
	results.DockerFailure: true, results.ProbeFailure: true,
}

// summarize prints the verdict counts and returns the exit code.
func summarize(w io.Writer, f *results.File, out string) int {
	counts := map[results.Verdict]int{}
	for _, r := range f.Runs {
		counts[r.Verdict]++
	}
	var parts []string
	for _, v := range results.VerdictOrder {
		if n := counts[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, v))
		}
	}
	fmt.Fprintf(w, "%d runs: %s; results in %s\n", len(f.Runs), strings.Join(parts, ", "), filepath.Join(out, runner.ResultsName))
	for _, r := range f.Runs {
		if failing[r.Verdict] {
			return ExitFailed
		}
	}
	if counts[results.InfraError] > 0 {
		return ExitInfra
	}
	return ExitOK
}

// appendHistory adds a finished run to the history database; failures are
// reported, never fatal (the results directory is the record).
func appendHistory(ctx context.Context, g *globalFlags, f *runFlags, errOut io.Writer, file *results.File) {
	path := historyPath(g, f)
	if path == "" {
		return
	}
	store, err := history.Open(path)
	if err != nil {
		fmt.Fprintf(errOut, "matrixctl: history %s: %v\n", path, err)
		return
	}
	defer store.Close()
	if _, err := store.Append(ctx, file); err != nil {
		fmt.Fprintf(errOut, "matrixctl: history %s: %v\n", path, err)
		return
	}
	if err := store.AppendTimes(ctx, file); err != nil {
		fmt.Fprintf(errOut, "matrixctl: history %s: %v\n", path, err)
	}
}

// historyPath is the history database of a run ("" for --history none).
func historyPath(g *globalFlags, f *runFlags) string {
	switch f.history {
	case "none":
		return ""
	case "":
		return history.DefaultPath(g.Cache)
	}
	return f.history
}

// pastTiming is what earlier runs of provider took, from the history
// database when there is one: the seed of the progress estimate. Without
// it the estimate starts from conservative defaults.
func pastTiming(ctx context.Context, g *globalFlags, f *runFlags, provider string, errOut io.Writer) runner.Timing {
	path := historyPath(g, f)
	if path == "" {
		return runner.Timing{}
	}
	if _, err := os.Stat(path); err != nil {
		return runner.Timing{}
	}
	store, err := history.Open(path)
	if err != nil {
		fmt.Fprintf(errOut, "matrixctl: history %s: %v\n", path, err)
		return runner.Timing{}
	}
	defer store.Close()
	t, err := store.Timing(ctx, provider)
	if err != nil {
		fmt.Fprintf(errOut, "matrixctl: history %s: %v\n", path, err)
		return runner.Timing{}
	}
	return runner.Timing{Phases: t.Phases, Run: t.Run, Runs: t.Runs}
}

// vagrantProvider checks that vagrant, its libvirt plugin and libvirtd are
// there and, when resuming, destroys the domains the interrupted run left.
func vagrantProvider(ctx context.Context, cache *images.Cache, streams Streams, resume string) (runner.Provider, error) {
	vp := &vagrantprov.Provider{Cache: cache}
	if err := vp.CheckTools(ctx); err != nil {
		return nil, withExit(ExitInfra, err)
	}
	if resume != "" {
		removed, err := vp.DestroyLeftovers(ctx, resume)
		if err != nil {
			return nil, withExit(ExitInfra, fmt.Errorf("--resume %s: destroying vagrant domains left behind: %w", resume, err))
		}
		if len(removed) > 0 {
			fmt.Fprintf(streams.ErrOut, "matrixctl: destroyed %d vagrant domain(s) the interrupted run left: %s\n", len(removed), strings.Join(removed, ", "))
		}
	}
	return vp, nil
}

// parseBudget reads --budget: a number of VM-runs, or a duration (2h, 90m).
func parseBudget(s string) (*runner.Budget, error) {
	if s == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return nil, fmt.Errorf("--budget %s: want a positive number of runs or a duration like 2h", s)
		}
		return &runner.Budget{Runs: n}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("--budget %q: want a number of runs (e.g. 40) or a duration (e.g. 2h)", s)
	}
	return &runner.Budget{Time: d}, nil
}

// Below either of these, run warns before it starts that the cache's disk
// is nearly full (kernels and rootfs images take GiBs; a full disk fails
// a run half-way as an infra error).
const (
	lowDiskFree    = 10 << 30
	lowDiskPercent = 10
)

// warnLowDisk prints a warning with the numbers and the prune to run when
// the cache's filesystem is nearly full.
func warnLowDisk(w io.Writer, cacheDir string) {
	d, err := images.DiskSpaceOf(cacheDir)
	if err == nil {
		fmt.Fprint(w, lowDiskWarning(cacheDir, d))
	}
}

// lowDiskWarning is warnLowDisk's line for d ("" when there is room).
func lowDiskWarning(cacheDir string, d images.DiskSpace) string {
	if !d.Low(lowDiskFree, lowDiskPercent) {
		return ""
	}
	return fmt.Sprintf("matrixctl: warning: the cache's filesystem (%s) has %s free of %s (%.1f %%), under %s or %d %%; "+
		"free space with: matrixctl cache prune --max-size %s (matrixctl cache ls lists the entries)\n",
		cacheDir, formatSize(int64(d.Free)), formatSize(int64(d.Total)), float64(d.Free)*100/float64(max(d.Total, 1)),
		formatSize(lowDiskFree), lowDiskPercent, pruneHint(cacheDir, d))
}

// pruneHint is a --max-size that frees what the warning asks for (in whole
// GiB, rounded down; 0 when even an empty cache would not be enough).
func pruneHint(cacheDir string, d images.DiskSpace) string {
	need := max(int64(lowDiskFree)-int64(d.Free), int64(float64(d.Total)*lowDiskPercent/100)-int64(d.Free))
	es, _ := images.ListEntries(cacheDir)
	var size int64
	for _, e := range es {
		size += e.Size
	}
	return strconv.FormatInt(max(size-need, 0)>>30, 10) + "G"
}
