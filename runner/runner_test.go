package runner

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

func testCell(id string) matrix.Cell {
	return matrix.Cell{
		ID: id, Kernel: matrix.KernelRef{Version: "6.1"}, Distro: matrix.DistroRef{Name: "debian12", Suite: "bookworm"},
		Docker: matrix.DockerRef{Version: "20.10.24"}, Driver: "overlay2", Status: matrix.StatusRunnable,
		Settings: matrix.Settings{Probes: []string{"io"}, Soak: time.Second, Timeout: time.Minute, CPUs: 1, MemoryMB: 512},
	}
}

func readResults(t *testing.T, dir string) results.File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ResultsName))
	if err != nil {
		t.Fatal(err)
	}
	var f results.File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRunVerdictsFromScriptedMachines(t *testing.T) {
	okProbe := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	scripts := map[string]*script{
		"pass":     {probes: okProbe},
		"panic":    {console: "[    1.0] booting\nKernel panic - not syncing: sysrq triggered crash\n", probes: okProbe},
		"silent":   {exitDuringProbes: &Exit{Reason: ExitHang, Detail: "no console output for 60s"}},
		"crashed":  {exitDuringProbes: &Exit{Reason: ExitCrashed, Detail: "qemu exited with status 0"}},
		"hungtask": {console: "INFO: task dd:123 blocked for more than 2 seconds.\n", probes: okProbe},
		"mismatch": {probes: ProbeReport{Probes: []results.Probe{{Name: "io"}}, Lost: []string{"/data/f1 offset 8192: expected gen 2 crc 0x1a2b, found zeros"}}},
		"dirty":    {probes: okProbe, scratchDirty: true},
		"ioerror":  {console: "I/O error, dev vdb, sector 4096 op 0x1:(WRITE)\n", probes: ProbeReport{Probes: []results.Probe{{Name: "io"}}, FailedOps: []string{"io: write /data/f2 at 4096: input/output error"}}},
		"dockerd":  {probes: okProbe, pingErr: errors.New("connection refused")},
		"noready":  {dockerErr: errors.New("dockerd did not answer within 120s")},
		"probe":    {probes: ProbeReport{Probes: []results.Probe{{Name: "net", Errors: []string{"3 connection resets"}}}}},
		"infra":    {bootErrs: []error{Infra("start qemu", errBoot), Infra("start qemu", errBoot), Infra("start qemu", errBoot)}},
		"flaky":    {bootErrs: []error{Infra("start qemu", errBoot)}, probes: okProbe},
		"agentno":  {dockerErr: &UnsupportedError{Reason: "dockerd 20.10.24: driver aufs not supported by the kernel"}},
		"stuck":    {probes: okProbe, shutdownErr: context.DeadlineExceeded},
		"timeout":  {probeBlocks: true},
	}
	want := map[string]struct {
		verdict results.Verdict
		reason  string
	}{
		"pass":     {results.Pass, ""},
		"panic":    {results.KernelCrash, "sysrq"},
		"silent":   {results.Hang, "no console output"},
		"crashed":  {results.KernelCrash, "by itself"},
		"hungtask": {results.Hang, "blocked"},
		"mismatch": {results.DataLoss, "offset 8192"},
		"dirty":    {results.FSCorruption, "e2fsck"},
		"ioerror":  {results.ProbeFailure, "write /data/f2"},
		"dockerd":  {results.DockerFailure, "refused"},
		"noready":  {results.DockerFailure, "did not answer"},
		"probe":    {results.ProbeFailure, "resets"},
		"infra":    {results.InfraError, "could not start"},
		"flaky":    {results.Pass, ""},
		"agentno":  {results.Unsupported, "aufs"},
		"stuck":    {results.Hang, "shutdown"},
		"timeout":  {results.Hang, "timeout"},
		"planned":  {results.Unsupported, "no aufs in Debian kernels"},
	}
	var cells []matrix.Cell
	for id := range want {
		c := testCell(id)
		if id == "timeout" {
			c.Settings.Timeout = 200 * time.Millisecond
		}
		if id == "planned" {
			c.Status, c.Reason = matrix.StatusUnsupported, "no aufs in Debian kernels"
		}
		cells = append(cells, c)
	}
	fake := newFake(scripts)
	out := t.TempDir()
	f, err := Run(context.Background(), cells, Options{
		Provider: fake, Prober: fakeProber{fake}, Console: newLineScanner, Checker: CheckerFunc(fakeChecker),
		Out: out, Parallel: 4, HostMemoryMB: 8192, ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	onDisk := readResults(t, out)
	if len(onDisk.Runs) != len(want) || len(f.Runs) != len(want) {
		t.Fatalf("results.json has %d runs, want %d", len(onDisk.Runs), len(want))
	}
	if onDisk.Schema != results.SchemaVersion || onDisk.Provider != "fake" || onDisk.Finished.IsZero() {
		t.Errorf("header: %+v", onDisk)
	}
	for _, run := range onDisk.Runs {
		w := want[run.Cell]
		if run.Verdict != w.verdict || !strings.Contains(run.Reason, w.reason) {
			t.Errorf("%s: verdict %s (%q), want %s containing %q", run.Cell, run.Verdict, run.Reason, w.verdict, w.reason)
		}
		if run.Verdict != results.Unsupported && run.Verdict != results.InfraError && run.Cell != "agentno" {
			for _, name := range []string{"console", "probes", "agent"} {
				p, ok := run.Artifacts[name]
				if !ok && name == "probes" && run.Cell == "noready" {
					continue // dockerd never answered: no probes ran
				}
				if !ok {
					t.Errorf("%s: no %s artifact: %v", run.Cell, name, run.Artifacts)
					continue
				}
				if _, err := os.Stat(filepath.Join(out, p)); err != nil {
					t.Errorf("%s: artifact %s: %v", run.Cell, name, err)
				}
			}
			if len(run.Phases) < 4 {
				t.Errorf("%s: phases %+v", run.Cell, run.Phases)
			}
		}
	}
	byCell := map[string]results.Run{}
	for _, run := range onDisk.Runs {
		byCell[run.Cell] = run
	}
	if r := byCell["infra"]; r.Attempt != 3 {
		t.Errorf("infra: attempt %d, want 3 (two retries)", r.Attempt)
	}
	if r := byCell["flaky"]; r.Attempt != 2 {
		t.Errorf("flaky: attempt %d, want 2", r.Attempt)
	}
	if r := byCell["dirty"]; r.Checker == nil || r.Checker.Clean || r.Artifacts["checker"] == "" {
		t.Errorf("dirty: checker %+v, artifacts %v", r.Checker, r.Artifacts)
	}
	if r := byCell["pass"]; r.Checker == nil || !r.Checker.Clean || r.KernelRelease != "6.1.0-fake" || len(r.Probes) != 1 {
		t.Errorf("pass: %+v", r)
	}
	if r := byCell["planned"]; len(r.Phases) != 0 {
		t.Errorf("a plan-time unsupported cell was booted: %+v", r)
	}
	if fake.attempts["planned/1"] != 0 {
		t.Errorf("planned cell booted")
	}
	// scratch disks are removed unless --retain
	matches, _ := filepath.Glob(filepath.Join(out, "runs", "*", "*", "scratch.img"))
	if len(matches) != 0 {
		t.Errorf("scratch disks left: %v", matches)
	}
	for _, m := range fake.machines {
		if !m.closed {
			t.Errorf("machine of %s not closed", m.req.Cell.ID)
		}
	}
}

func TestRetainKeepsFailedScratch(t *testing.T) {
	fake := newFake(map[string]*script{"dirty": {scratchDirty: true, probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}}})
	out := t.TempDir()
	_, err := Run(context.Background(), []matrix.Cell{testCell("dirty"), testCell("ok")}, Options{
		Provider: fake, Prober: fakeProber{fake}, Checker: CheckerFunc(fakeChecker), Out: out, Retain: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, RunDir("dirty", 1), "scratch.img")); err != nil {
		t.Errorf("failed run's scratch not retained: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, RunDir("ok", 1), "scratch.img")); err == nil {
		t.Errorf("passing run's scratch retained")
	}
}

func TestRepeatAndRefuseExistingRun(t *testing.T) {
	fake := newFake(nil)
	out := t.TempDir()
	opts := Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Repeat: 3}
	f, err := Run(context.Background(), []matrix.Cell{testCell("a"), testCell("b")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 6 || f.Runs[0].Cell != "a" || f.Runs[2].Repeat != 3 {
		t.Fatalf("runs: %+v", f.Runs)
	}
	if _, err := Run(context.Background(), []matrix.Cell{testCell("a")}, opts); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("second run into the same dir: %v", err)
	}
	// resuming a complete run runs nothing
	f, err = Resume(context.Background(), opts)
	if err != nil || len(f.Runs) != 6 || fake.boots != 6 {
		t.Fatalf("resume of a complete run: %v, %d runs, %d boots", err, len(f.Runs), fake.boots)
	}
}

func TestStopLeavesResumableDir(t *testing.T) {
	okProbe := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	scripts := map[string]*script{"slow1": {probeBlocks: true, probes: okProbe}, "slow2": {probeBlocks: true, probes: okProbe}}
	fake := newFake(scripts)
	out := t.TempDir()
	stop := make(chan struct{})
	cells := []matrix.Cell{testCell("slow1"), testCell("slow2"), testCell("c"), testCell("d")}
	opts := Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Parallel: 2, Stop: stop}
	runThenStop(t, cells, opts, stop)
	if got := readResults(t, out); len(got.Runs) != 0 || !got.Finished.IsZero() {
		t.Fatalf("interrupted runs recorded: %+v", got.Runs)
	}
	// resume with machines that now finish
	scripts["slow1"].probeBlocks, scripts["slow2"].probeBlocks = false, false
	opts.Stop = nil
	f, err := Resume(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 4 || f.Finished.IsZero() {
		t.Fatalf("after resume: %+v", f.Runs)
	}
}

func TestJournalTornLastLine(t *testing.T) {
	good := `{"type":"header","time":"2026-01-01T00:00:00Z","header":{"schema":"x","run_id":"r","spec":"","provider":"fake","started":"2026-01-01T00:00:00Z","runs":[]},"plan":{"cells":[]}}
{"type":"started","cell":"a","repeat":1,"attempt":1}
{"type":"finished","cell":"a","repeat":1,"run":{"cell":"a","repeat":1,"verdict":"pass"}}
{"type":"started","cell":"b","repeat":1,"attempt":1}
{"type":"machine","cell":"b","repeat":1,"machine":{"pid":12345,"start_ticks":99}}
`
	st, err := readJournal(strings.NewReader(good + `{"type":"finis`))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Finished) != 1 || st.InFlight[runKey{"b", 1}].Pid != 12345 {
		t.Fatalf("state: %+v", st)
	}
	if _, err := readJournal(strings.NewReader(`{"type":"header"` + "\n" + good)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("damaged first line: %v", err)
	}
}

func TestHardCancelKillsMachines(t *testing.T) {
	fake := newFake(map[string]*script{"a": {probeBlocks: true}, "b": {probeBlocks: true}})
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := Run(ctx, []matrix.Cell{testCell("a"), testCell("b")}, Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Parallel: 2, ShutdownTimeout: time.Hour})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a hard cancel")
	}
	for _, m := range fake.machines {
		if e := m.Exit(); e.Reason != ExitKilled {
			t.Errorf("machine %s: %+v, want killed", m.req.Cell.ID, e)
		}
	}
}

func TestUnsupportedAtPrepareIsNotPreparedAgain(t *testing.T) {
	fake := newFake(map[string]*script{"aufs": {prepareErr: &UnsupportedError{Reason: "kernel 6.1.0-28-amd64 has no aufs"}}})
	prepares := 0
	counting := &countingProvider{fakeProvider: fake, prepares: &prepares}
	f, err := Run(context.Background(), []matrix.Cell{testCell("aufs")}, Options{Provider: counting, Prober: fakeProber{fake}, Out: t.TempDir(), Repeat: 3, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 3 || prepares != 1 {
		t.Fatalf("%d runs, %d prepares; want 3 runs, 1 prepare", len(f.Runs), prepares)
	}
	for _, r := range f.Runs {
		if r.Verdict != results.Unsupported || !strings.Contains(r.Reason, "no aufs") {
			t.Errorf("r%d: %s %q", r.Repeat, r.Verdict, r.Reason)
		}
	}
}

// TestPreflightWarningsOnTheRun: what a Preflighter reports after Prepare
// lands in the run's findings and leaves a pass a pass.
func TestPreflightWarningsOnTheRun(t *testing.T) {
	warn := results.Finding{Source: "runner", Category: results.CatKernelConfig, Severity: results.SevWarning,
		Title: "kernel 6.1.0-28-amd64: seccomp profiles needs CONFIG_SECCOMP, CONFIG_SECCOMP_FILTER: CONFIG_SECCOMP_FILTER is not set"}
	fake := newFake(map[string]*script{"warned": {preflight: []results.Finding{warn}, probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}}})
	out := t.TempDir()
	if _, err := Run(context.Background(), []matrix.Cell{testCell("warned")}, Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	f := readResults(t, out)
	if len(f.Runs) != 1 {
		t.Fatalf("%d runs", len(f.Runs))
	}
	r := f.Runs[0]
	if r.Verdict != results.Pass || !slices.Contains(r.Findings, warn) {
		t.Errorf("%s %q, findings %v; want pass with the kernel-config warning", r.Verdict, r.Reason, r.Findings)
	}
}

type countingProvider struct {
	*fakeProvider
	prepares *int
}

func (c *countingProvider) Prepare(ctx context.Context, req Request) error {
	*c.prepares++
	return c.fakeProvider.Prepare(ctx, req)
}

// TestCrashCheckNeedsARebooter: a cell that asks for the crash-consistency
// check on a provider that cannot boot again on the same scratch disk must
// not pass without it: it is unsupported with the reason and never booted.
func TestCrashCheckNeedsARebooter(t *testing.T) {
	cell := testCell("crash-check")
	cell.Settings.CrashCheck = true
	fake := newFake(nil)
	out := t.TempDir()
	f, err := Run(context.Background(), []matrix.Cell{cell}, Options{Provider: fake, Prober: fakeProber{fake}, Out: out, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 1 || f.Runs[0].Verdict != results.Unsupported || !strings.Contains(f.Runs[0].Reason, "cannot boot a machine again") {
		t.Fatalf("runs %+v, want one unsupported run saying the provider cannot reboot", f.Runs)
	}
	if fake.boots != 0 {
		t.Errorf("booted %d times, want 0", fake.boots)
	}
}

// TestPackagesNeedAPackageChanger: a cell with package changes on a
// provider that does not build its host (vagrant, local) is unsupported
// with the reason and never booted, instead of passing on the standard host.
func TestPackagesNeedAPackageChanger(t *testing.T) {
	cell := testCell("packages")
	cell.Settings.Packages = matrix.PackageChanges{Remove: []string{"apparmor"}}
	fake := newFake(nil)
	f, err := Run(context.Background(), []matrix.Cell{cell}, Options{Provider: fake, Prober: fakeProber{fake}, Out: t.TempDir(), Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Runs) != 1 || f.Runs[0].Verdict != results.Unsupported || !strings.Contains(f.Runs[0].Reason, "packages (-apparmor): the fake provider") {
		t.Fatalf("runs %+v, want one unsupported run saying the provider cannot change packages", f.Runs)
	}
	if fake.boots != 0 {
		t.Errorf("booted %d times, want 0", fake.boots)
	}
}

// runThenStop runs cells, closes stop once the first runs are under way and
// expects the run to end interrupted.
func runThenStop(t *testing.T, cells []matrix.Cell, opts Options, stop chan struct{}) {
	t.Helper()
	done := make(chan error)
	go func() {
		_, err := Run(context.Background(), cells, opts)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	if err := <-done; !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run after stop: %v", err)
	}
}
