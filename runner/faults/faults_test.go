package faults_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// base is the one real cell every fault runs on: Debian's 6.1 kernel,
// bookworm's docker.io, overlay2 on ext4, a small VM and a short soak.
var base = testutil.SmallSpec{Soak: "10s"}.YAML()

// watchdog is the VM watchdog of the suite: short, so the sigstop fault
// ends quickly, and far above a healthy guest's 1 s agent heartbeat.
const watchdog = 30 * time.Second

// expectation is one row of the suite: a fault, the verdict it must get
// and where its evidence must be.
type expectation struct {
	fault   string // "" = the clean cell (false-positive check)
	init    string // the cell's init setting; "" = the default
	verdict results.Verdict
	// evidence returns the evidence shown in the table, or an error when
	// the run lacks what the verdict must carry.
	evidence func(r results.Run) (string, error)
}

var suite = []expectation{
	{"", "", results.Pass, clean(matrix.InitSystemd)},
	// The agent as PID 1 stays an option (kernels or images without
	// systemd): its clean cell must pass too.
	{"", matrix.InitAgent, results.Pass, clean(matrix.InitAgent)},
	{"sysrq-panic", "", results.KernelCrash, func(r results.Run) (string, error) {
		for _, f := range r.Findings {
			if f.Source == "console" && strings.Contains(f.Title, "sysrq") {
				if !strings.Contains(f.Excerpt, "Kernel panic") {
					return "", fmt.Errorf("panic finding %q without the panic in its excerpt: %q", f.Title, f.Excerpt)
				}
				return fmt.Sprintf("%q + %d-line excerpt", f.Title, strings.Count(f.Excerpt, "\n")+1), nil
			}
		}
		return "", fmt.Errorf("no console finding naming the sysrq panic")
	}},
	{"sigstop", "", results.Hang, func(r results.Run) (string, error) {
		if !strings.HasPrefix(r.Reason, "watchdog:") {
			return "", fmt.Errorf("reason %q is not the watchdog's", r.Reason)
		}
		return r.Reason, nil
	}},
	// The agent as PID 1 started dockerd itself and nothing restarts it.
	{"kill-dockerd", matrix.InitAgent, results.DockerFailure, func(r results.Run) (string, error) {
		if !strings.HasPrefix(r.Reason, "dockerd") {
			return "", fmt.Errorf("reason %q does not name dockerd", r.Reason)
		}
		return r.Reason, nil
	}},
	// Under the distro's systemd, docker.service restarts the killed
	// dockerd: the run is still a docker-failure, and its reason is the
	// guest's report of the exit, whatever the new dockerd answered.
	{"kill-dockerd", "", results.DockerFailure, func(r results.Run) (string, error) {
		if !strings.Contains(r.Reason, "its init restarted it") || !strings.Contains(r.Reason, "docker.service") {
			return "", fmt.Errorf("reason %q is not the guest's report of dockerd's exit and restart", r.Reason)
		}
		if r.Host == nil || r.Host.InitMode != matrix.InitSystemd {
			return "", fmt.Errorf("host %+v: the cell did not boot the distro's systemd", r.Host)
		}
		return r.Reason, nil
	}},
	{"hung-task", "", results.Hang, func(r results.Run) (string, error) {
		for _, f := range r.Findings {
			if f.Source == "console" && f.Category == "hung-task" {
				return fmt.Sprintf("%q", f.Title), nil
			}
		}
		return "", fmt.Errorf("no hung-task console finding")
	}},
	{"flip-bytes", "", results.FSCorruption, func(r results.Run) (string, error) {
		where := ""
		for _, f := range r.Findings {
			if f.Category == "fault-injected" && strings.Contains(f.Title, "offset") {
				where = strings.TrimPrefix(f.Title, "injected fault flip-bytes: ")
			}
		}
		if where == "" {
			return "", fmt.Errorf("no finding names the flipped file and offset")
		}
		if r.Checker == nil || r.Checker.Clean {
			return "", fmt.Errorf("the checker did not find the damage: %+v", r.Checker)
		}
		return fmt.Sprintf("%s; %s exit %d", where, r.Checker.Tool, r.Checker.ExitCode), nil
	}},
	// The I/O errors must be on the console; what decides fs-corruption is,
	// by the verdict precedence, the host checker when it found the scratch
	// filesystem damaged (whether it did depends on which writes the
	// injected errors hit before the shutdown), else the filesystem's own
	// report on the console (e.g. "JBD2: aborting journal").
	{"blkdebug-eio", "", results.FSCorruption, func(r results.Run) (string, error) {
		var io, fs string
		for _, f := range r.Findings {
			switch {
			case f.Source == "console" && f.Category == "io-error" && io == "":
				io = f.Title
			case f.Source == "console" && f.Title == strings.TrimPrefix(r.Reason, "console: "):
				fs = f.Title
			}
		}
		if fs == "" && r.Checker != nil && !r.Checker.Clean && strings.HasPrefix(r.Reason, r.Checker.Tool+" found errors") {
			fs = fmt.Sprintf("%s exit %d", r.Checker.Tool, r.Checker.ExitCode)
		}
		if io == "" || fs == "" {
			return "", fmt.Errorf("want an io-error on the console and the deciding filesystem evidence: the checker's or the console's (io %q, fs %q)", io, fs)
		}
		ev := fmt.Sprintf("%q, then %q", io, fs)
		for _, f := range r.Findings {
			if f.Source == "probe" && f.Category == "failed-op" {
				ev += "; failed: " + f.Title
				break
			}
		}
		return ev, nil
	}},
	{"flip-data", "", results.DataLoss, func(r results.Run) (string, error) {
		where := ""
		for _, f := range r.Findings {
			if f.Category == "fault-injected" && strings.HasPrefix(f.Title, "injected fault flip-data: ") {
				where = strings.TrimPrefix(f.Title, "injected fault flip-data: ")
			}
		}
		file, _, ok := strings.Cut(strings.TrimPrefix(where, fmt.Sprintf("%d bytes inverted in ", 16)), " at offset")
		if where == "" || !ok {
			return "", fmt.Errorf("no finding names the flipped file: %q", where)
		}
		// A hard link shares the block: the finding for either name counts.
		for _, f := range r.Findings {
			if f.Category == "data-loss" && strings.Contains(f.Title, file+" at offset 0:") {
				return fmt.Sprintf("flipped %s; %s", file, f.Title), nil
			}
		}
		return "", fmt.Errorf("no data-loss finding names %s at offset 0 (reason %q)", file, r.Reason)
	}},
	{"power-cut", "", results.Pass, func(r results.Run) (string, error) {
		var phases []string
		for _, p := range r.Phases {
			phases = append(phases, p.Name)
		}
		if !slices.Contains(phases, runner.PhaseReboot) || !slices.Contains(phases, runner.PhaseVerify) {
			return "", fmt.Errorf("phases %v: no reboot and verification after the power cut", phases)
		}
		if r.Checker == nil || !r.Checker.Clean {
			return "", fmt.Errorf("checker after the reboot not clean: %+v", r.Checker)
		}
		for _, f := range r.Findings {
			if f.Category == "crash-check" {
				if !strings.Contains(f.Title, "verified intact") || strings.Contains(f.Title, " 0 promised file") {
					return "", fmt.Errorf("crash check did not verify promised data intact: %s", f.Title)
				}
				return f.Title + "; " + r.Checker.Tool + " clean", nil
			}
		}
		return "", fmt.Errorf("no crash-check finding")
	}},
}

// clean is the evidence of a clean cell (the false-positive check): no
// error finding, the checker clean, and the init the row asked for.
func clean(init string) func(r results.Run) (string, error) {
	return func(r results.Run) (string, error) {
		for _, f := range r.Findings {
			if f.Severity == "fatal" || f.Severity == "error" {
				return "", fmt.Errorf("clean cell has an %s finding: %s", f.Severity, f.Title)
			}
		}
		if r.Checker == nil || !r.Checker.Clean {
			return "", fmt.Errorf("checker not clean: %+v", r.Checker)
		}
		if r.Host == nil || r.Host.InitMode != init {
			return "", fmt.Errorf("host %+v: want init %s", r.Host, init)
		}
		return fmt.Sprintf("no error finding; %s clean; PID 1 %s", r.Checker.Tool, r.Host.Init), nil
	}
}

// cells makes one cell per row of suite from the base spec's only cell.
func cells(t *testing.T) []matrix.Cell {
	t.Helper()
	spec, err := matrix.Parse("faults.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	planned, err := spec.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(planned) != 1 || planned[0].Status != matrix.StatusRunnable {
		t.Fatalf("want one runnable cell, plan: %+v", planned)
	}
	var out []matrix.Cell
	for _, e := range suite {
		c := planned[0]
		c.Settings.Faults = nil
		c.ID += "-clean"
		if e.fault != "" {
			c.Settings.Faults = []string{e.fault}
			c.ID = planned[0].ID + "-" + e.fault
		}
		if e.init != "" {
			c.Settings.Init = e.init
			c.ID += "-init-" + e.init
		}
		out = append(out, c)
	}
	return out
}

// row is one line of the printed table.
type row struct {
	fault, expected, got, mark, evidence string
}

// TestIntegrationFaults injects every implemented fault into a real guest,
// runs the cells as one matrix run and checks each verdict and its
// evidence; then it runs a host-side fault (the QEMU binary missing). It
// prints the table fault → expected → got → evidence.
func TestIntegrationFaults(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck")
	cs := cells(t)
	cache, err := images.New(testutil.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	defer func() { printTable(rows) }()

	out := filepath.Join(t.TempDir(), "results")
	f, err := runner.Run(context.Background(), cs, runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir(), Watchdog: watchdog},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 2, Retries: -1,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	byID := map[string]results.Run{}
	for _, r := range f.Runs {
		byID[r.Cell] = r
	}
	for i, e := range suite {
		name := e.fault
		if name == "" {
			name = "(none: clean soak)"
		}
		if e.init != "" {
			name += " (init: " + e.init + ")"
		}
		r, ok := byID[cs[i].ID]
		if !ok {
			t.Errorf("%s: no run recorded", cs[i].ID)
			rows = append(rows, row{name, string(e.verdict), "-", "FAIL", "no run"})
			continue
		}
		rows = append(rows, check(t, name, e.verdict, r, e.evidence))
	}
	matches, _ := filepath.Glob(filepath.Join(out, "runs", "*", "*", "scratch.img"))
	if len(matches) != 0 {
		t.Errorf("scratch disks left: %v", matches)
	}
	testutil.NoProcessesLeft(t, out)

	rows = append(rows, qemuMissing(t, cs[0], cache))
	rows = append(rows, hostFaults(t, cs[0], cache)...)
}

// qemuMissing runs a cell with a QEMU binary that does not exist: the run
// is an infra-error, retried once, and counts neither for nor against the
// cell in the report.
func qemuMissing(t *testing.T, c matrix.Cell, cache *images.Cache) row {
	const retries = 1
	out := filepath.Join(t.TempDir(), "results-qemu-missing")
	f, err := runner.Run(context.Background(), []matrix.Cell{c}, runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir(), QEMU: filepath.Join(t.TempDir(), "qemu-system-x86_64")},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 1, Retries: retries,
	})
	if err != nil {
		t.Fatalf("Run (qemu missing): %v", err)
	}
	name := "qemu binary missing (host)"
	if len(f.Runs) != 1 {
		t.Errorf("qemu missing: %d runs", len(f.Runs))
		return row{name, string(results.InfraError), "-", "FAIL", "no run"}
	}
	return check(t, name, results.InfraError, f.Runs[0], func(r results.Run) (string, error) {
		if r.Attempt != retries+1 {
			return "", fmt.Errorf("attempt %d, want %d (retried)", r.Attempt, retries+1)
		}
		if !strings.Contains(r.Reason, "find qemu") {
			return "", fmt.Errorf("reason %q does not say qemu was not found", r.Reason)
		}
		rep, err := reports.Build(context.Background(), f, reports.Options{Dir: out})
		if err != nil {
			return "", err
		}
		if rep.Summary.Counted != 0 || rep.Summary.InfraErrors != 1 {
			return "", fmt.Errorf("report counts %d run(s) for the cell, %d infra-error(s); want 0 and 1", rep.Summary.Counted, rep.Summary.InfraErrors)
		}
		return fmt.Sprintf("attempt %d/%d, counted 0: %s", r.Attempt, retries+1, r.Reason), nil
	})
}

// check compares one run with its expectation and returns its table row.
func check(t *testing.T, name string, want results.Verdict, r results.Run, evidence func(results.Run) (string, error)) row {
	t.Helper()
	ev, err := evidence(r)
	mark := "ok"
	if r.Verdict != want || err != nil {
		mark = "FAIL"
		if err != nil {
			ev = err.Error()
		} else {
			ev = r.Reason
		}
		t.Errorf("%s: want %s, got %s (%s); evidence: %s; findings: %+v", r.Cell, want, r.Verdict, r.Reason, ev, r.Findings)
	}
	return row{name, string(want), string(r.Verdict), mark, oneLine(ev)}
}

func printTable(rows []row) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tEXPECTED\tGOT\tOK\tEVIDENCE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.fault, r.expected, r.got, r.mark, r.evidence)
	}
	tw.Flush()
	fmt.Print("\n" + b.String() + "\n")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
