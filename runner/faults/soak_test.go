package faults_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// exampleSpec is the repository's default job, the matrix users run first.
const exampleSpec = "../../matrix.yaml"

// soakSettings is how the clean soak runs the example's cells. The
// defaults fit CI's time limit; the MATRIXCTL_SOAK_* variables (see
// soakFromEnv) raise them for a longer soak by hand (make soak).
type soakSettings struct {
	repeats  int
	soak     time.Duration
	cpus     int      // 0: the spec's
	memoryMB int      // 0: the spec's
	probes   []string // nil: the spec's
	parallel int
	out      string // results directory to keep; "": a temporary one
}

// ciSoak is the clean soak make test (and so CI) runs: every runnable
// cell of the example once, each in a fresh VM booting the distro's
// systemd, with the io probe, a 3 s soak and a 1-vCPU, 1 GiB VM, two VMs
// at once. Under the agent as PID 1 it ran every cell twice (28 runs took
// 11m44s on a quiet host); under systemd a run costs about twice the CPU
// (docker-ready 40 s-2.5 min under load instead of ~30 s, and an orderly
// shutdown), and 28 systemd runs took 31 min here, which CI's 45-minute
// budget cannot take beside the fault suite and the rest of make test. So
// CI runs each cell once; repeats are for make soak (MATRIXCTL_SOAK_REPEATS).
// Churn would add ~20 s a run and net ~100 s. One vCPU also keeps the guest
// off cross-CPU code patching, where a 6.12 guest under TCG once oopsed
// before the agent started. make soak runs the example's own probes, VM
// and soak.
func ciSoak() soakSettings {
	return soakSettings{repeats: 1, soak: 3 * time.Second, cpus: 1, memoryMB: 1024, probes: []string{"io"}, parallel: 2}
}

// soakFromEnv overrides ciSoak with MATRIXCTL_SOAK_REPEATS (runs per
// cell), MATRIXCTL_SOAK_DURATION (a Go duration; "spec" keeps the
// example's), MATRIXCTL_SOAK_VM ("spec" keeps the example's VM size),
// MATRIXCTL_SOAK_PROBES (a comma list; "spec" keeps the example's) and
// MATRIXCTL_SOAK_OUT (a new results directory that is kept, with every
// run's evidence, for matrixctl report).
func soakFromEnv(t *testing.T, s soakSettings) soakSettings {
	t.Helper()
	if v := os.Getenv("MATRIXCTL_SOAK_REPEATS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MATRIXCTL_SOAK_REPEATS=%q: want a number >= 1", v)
		}
		s.repeats = n
	}
	if v := os.Getenv("MATRIXCTL_SOAK_DURATION"); v == "spec" {
		s.soak = 0
	} else if v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("MATRIXCTL_SOAK_DURATION=%q: want a positive duration like 30s", v)
		}
		s.soak = d
	}
	switch v := os.Getenv("MATRIXCTL_SOAK_VM"); v {
	case "":
	case "spec":
		s.cpus, s.memoryMB = 0, 0
	default:
		t.Fatalf("MATRIXCTL_SOAK_VM=%q: want spec or nothing", v)
	}
	switch v := os.Getenv("MATRIXCTL_SOAK_PROBES"); v {
	case "":
	case "spec":
		s.probes = nil
	default:
		s.probes = strings.Split(v, ",")
		for _, p := range s.probes {
			if !slices.Contains(matrix.Probes(), p) {
				t.Fatalf("MATRIXCTL_SOAK_PROBES=%q: %q is not one of %s", v, p, strings.Join(matrix.Probes(), ","))
			}
		}
	}
	s.out = os.Getenv("MATRIXCTL_SOAK_OUT")
	return s
}

// exampleCells plans the example spec and returns its runnable cells with
// the soak's settings applied. Cells the plan already marks unsupported
// never boot and are not part of the soak.
func exampleCells(t *testing.T, s soakSettings) []matrix.Cell {
	t.Helper()
	spec, err := matrix.Load(exampleSpec)
	if err != nil {
		t.Fatal(err)
	}
	planned, err := spec.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var out []matrix.Cell
	for _, c := range planned {
		if c.Status != matrix.StatusRunnable {
			continue
		}
		if len(c.Settings.Faults) > 0 || c.Settings.CrashCheck {
			t.Fatalf("%s: the example cell asks for faults %v / crash_check %v; the clean soak needs clean cells", c.ID, c.Settings.Faults, c.Settings.CrashCheck)
		}
		if s.soak > 0 {
			c.Settings.Soak = s.soak
		}
		if s.cpus > 0 {
			c.Settings.CPUs = s.cpus
		}
		if s.memoryMB > 0 {
			c.Settings.MemoryMB = s.memoryMB
		}
		if s.probes != nil {
			c.Settings.Probes = s.probes
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("%s plans no runnable cell", exampleSpec)
	}
	return out
}

// TestIntegrationSoakExample is the false-positive check of the verdicts:
// every runnable cell of the example matrix runs repeatedly through the
// real pipeline (QEMU, Debian kernels, the guest's dockerd, the example's
// probes, the live console analysis and the host checker) with no fault
// injected. Every run must pass, or be unsupported with a reason the
// kernel gave (aufs: no Debian kernel has it); no run may carry a fatal or
// error finding; every checker must be clean. It prints a table cell →
// runs → verdicts → checker → longest phase.
func TestIntegrationSoakExample(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck", "xfs_repair", "btrfs", "thin_check")
	s := soakFromEnv(t, ciSoak())
	cs := exampleCells(t, s)
	cache, err := images.New(testutil.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean soak of %s: %d runnable cells x %d repeats, soak %s, probes %v, vm %d cpu / %d MiB, %d at once",
		exampleSpec, len(cs), s.repeats, cs[0].Settings.Soak, cs[0].Settings.Probes, cs[0].Settings.CPUs, cs[0].Settings.MemoryMB, s.parallel)

	out := s.out
	if out == "" {
		out = filepath.Join(t.TempDir(), "results")
	}
	start := time.Now()
	f, err := runner.Run(context.Background(), cs, runner.Options{
		Provider: &qemu.Provider{Cache: cache, CacheDir: testutil.CacheDir()},
		Prober:   runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Spec: exampleSpec, Repeat: s.repeats, Parallel: s.parallel,
		Progress: runner.NewPlainProgress(os.Stdout),
	})
	t.Logf("soak took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	byCell := map[string][]results.Run{}
	for _, r := range f.Runs {
		byCell[r.Cell] = append(byCell[r.Cell], r)
	}
	var rows []soakRow
	for _, c := range cs {
		runs := byCell[c.ID]
		if len(runs) != s.repeats {
			t.Errorf("%s: %d runs recorded, want %d", c.ID, len(runs), s.repeats)
		}
		rows = append(rows, checkSoakCell(t, c, runs))
	}
	printSoakTable(rows)

	matches, _ := filepath.Glob(filepath.Join(out, "runs", "*", "*", "scratch.img"))
	if len(matches) != 0 {
		t.Errorf("scratch disks left: %v", matches)
	}
	testutil.NoProcessesLeft(t, out)
}

// soakRow is one line of the soak table: one cell, all its runs.
type soakRow struct {
	cell, runs, verdicts, checker, host, longest, mark string
}

// checkSoakCell checks every run of a clean cell and sums them up.
func checkSoakCell(t *testing.T, c matrix.Cell, runs []results.Run) soakRow {
	t.Helper()
	row := soakRow{cell: c.ID, runs: strconv.Itoa(len(runs)), mark: "ok"}
	fail := func(format string, args ...any) {
		row.mark = "FAIL"
		t.Errorf(c.ID+": "+format, args...)
	}
	var verdicts, checkers, hosts []string
	var longest results.Phase
	for _, r := range runs {
		v := string(r.Verdict)
		if r.Attempt > 1 {
			v += fmt.Sprintf("(attempt %d)", r.Attempt)
		}
		verdicts = append(verdicts, v)
		switch {
		case r.Verdict == results.Pass:
		case r.Verdict == results.Unsupported && unsupportedByKernel(c, r):
		default:
			fail("r%d: %s (%s); findings %+v", r.Repeat, r.Verdict, r.Reason, r.Findings)
		}
		for _, fd := range r.Findings {
			if fd.Severity == "fatal" || fd.Severity == "error" {
				fail("r%d: %s finding from %s: %s\n%s", r.Repeat, fd.Severity, fd.Source, fd.Title, fd.Excerpt)
			} else {
				t.Logf("%s r%d: %s finding from %s: %s", c.ID, r.Repeat, fd.Severity, fd.Source, fd.Title)
			}
		}
		if r.Verdict != results.Unsupported {
			h, err := standardHost(r.Host)
			if err != nil {
				fail("r%d: %v", r.Repeat, err)
			}
			hosts = append(hosts, h)
		}
		switch {
		case r.Verdict == results.Unsupported:
			checkers = append(checkers, "-")
		case r.Checker == nil:
			fail("r%d: no checker result", r.Repeat)
			checkers = append(checkers, "none")
		case !r.Checker.Clean:
			fail("r%d: %s exit %d: %s", r.Repeat, r.Checker.Tool, r.Checker.ExitCode, r.Checker.Output)
			checkers = append(checkers, fmt.Sprintf("%s exit %d", r.Checker.Tool, r.Checker.ExitCode))
		default:
			checkers = append(checkers, r.Checker.Tool+" clean")
		}
		for _, ph := range r.Phases {
			if ph.Duration > longest.Duration {
				longest = ph
			}
		}
	}
	row.verdicts = strings.Join(verdicts, ", ")
	row.checker = strings.Join(slices.Compact(checkers), ", ")
	row.host = strings.Join(slices.Compact(hosts), ", ")
	row.longest = "-"
	if longest.Name != "" {
		row.longest = fmt.Sprintf("%s %s", longest.Name, longest.Duration.Round(100*time.Millisecond))
	}
	return row
}

// standardHost checks that a run's guest was the host a standard Debian
// install is, the default of every example cell: the distro's systemd as
// PID 1, the unified cgroup hierarchy with Docker's systemd cgroup driver,
// and AppArmor among the security options. It returns the summary the
// table shows: init / cgroup version / driver / security options.
func standardHost(h *results.Host) (string, error) {
	if h == nil {
		return "none", fmt.Errorf("no host evidence")
	}
	var sec []string
	for _, o := range h.SecurityOptions {
		sec = append(sec, strings.TrimPrefix(strings.SplitN(o, ",", 2)[0], "name="))
	}
	sum := fmt.Sprintf("%s / cgroup v%s / %s / %s", h.Init, h.CgroupVersion, h.CgroupDriver, strings.Join(sec, "+"))
	switch {
	case h.InitMode != matrix.InitSystemd || !strings.HasPrefix(h.Init, "systemd "):
		return sum, fmt.Errorf("host %s: PID 1 is not the distro's systemd", sum)
	case h.CgroupVersion != "2" || h.CgroupDriver != "systemd":
		return sum, fmt.Errorf("host %s: not cgroup v2 with the systemd driver", sum)
	case !slices.Contains(sec, "apparmor"):
		return sum, fmt.Errorf("host %s: containers do not run under AppArmor", sum)
	}
	return sum, nil
}

// unsupportedByKernel tells whether an unsupported run of a runnable cell
// has a true reason: the cell waited for a kernel check that the
// downloaded kernel then failed (aufs: no Debian kernel has it). A
// runnable cell without such a pending check must never come out
// unsupported in the soak.
func unsupportedByKernel(c matrix.Cell, r results.Run) bool {
	return len(c.Pending) > 0 && c.Driver == "aufs" && strings.Contains(r.Reason, "aufs")
}

func printSoakTable(rows []soakRow) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tRUNS\tVERDICTS\tCHECKER\tHOST (INIT / CGROUP / DRIVER / SECURITY)\tLONGEST PHASE\tOK")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.cell, r.runs, r.verdicts, r.checker, r.host, r.longest, r.mark)
	}
	tw.Flush()
	fmt.Print("\n" + b.String() + "\n")
}
