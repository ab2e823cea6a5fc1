package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// rebootingFake is the fake provider plus Reboot: the new machine takes the
// old one's scratch image over, as the QEMU provider does.
type rebootingFake struct{ *fakeProvider }

func (p rebootingFake) Reboot(ctx context.Context, req Request, prev Machine) (Machine, error) {
	old := prev.(*fakeMachine)
	if err := os.Rename(old.scratch, filepath.Join(req.Dir, "scratch.img")); err != nil {
		return nil, Infra("take over scratch", err)
	}
	m := &fakeMachine{s: old.s, req: req, exited: make(chan struct{}), scratch: filepath.Join(req.Dir, "scratch.img")}
	if err := os.WriteFile(filepath.Join(req.Dir, "agent.log"), []byte("agent: reusing the ext4 filesystem\n"), 0o644); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.boots++
	p.machines = append(p.machines, m)
	p.mu.Unlock()
	fmt.Fprint(req.Console, old.s.rebootConsole)
	return m, nil
}

// crashProber is fakeProber plus the IO probe of a crash check: it says it
// started, writes one progress record and writes until the machine dies;
// VerifyAfterCrash returns the script's verification.
type crashProber struct{ fakeProber }

func (c crashProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	if !req.KeepIO {
		return c.fakeProber.RunProbes(ctx, req)
	}
	req.Started("io")
	rec := `{"schema":"matrixctl.probe/v1","probe":"io","kind":"metric","time":"2026-11-30T00:00:00Z","source":"io:/data/vol/io","metrics":{"bytes_written":4194304,"fsync_ops":12}}` + "\n"
	if err := os.WriteFile(req.RecordsPath, []byte(rec), 0o644); err != nil {
		return ProbeReport{}, err
	}
	<-ctx.Done()
	return ProbeReport{Probes: []results.Probe{{Name: "io"}}}, Infra("probes", ctx.Err())
}

func (c crashProber) VerifyAfterCrash(_ context.Context, req VerifyRequest) (ProbeReport, error) {
	m := c.p.machineOn(req.DockerHost)
	if m == nil {
		return ProbeReport{}, Infra("verify", fmt.Errorf("no machine behind %s", req.DockerHost))
	}
	return m.s.verify, nil
}

// machineOn is the last machine booted for the cell behind host.
func (p *fakeProvider) machineOn(host string) *fakeMachine {
	id := strings.TrimPrefix(host, "fake://")
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.machines) - 1; i >= 0; i-- {
		if p.machines[i].req.Cell.ID == id {
			return p.machines[i]
		}
	}
	return nil
}

func crashCell(id string) matrix.Cell {
	c := testCell(id)
	c.Settings.CrashCheck = true
	return c
}

func runCrash(t *testing.T, cells []matrix.Cell, scripts map[string]*script) (*rebootingFake, results.File, string) {
	t.Helper()
	fake := rebootingFake{newFake(scripts)}
	out := t.TempDir()
	f, err := Run(context.Background(), cells, Options{
		Provider: fake, Prober: crashProber{fakeProber{fake.fakeProvider}}, Checker: CheckerFunc(fakeChecker),
		Console: newLineScanner, Out: out, Parallel: 1, PowerCutAfter: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fake, *f, out
}

func verified(ok bool, lost ...string) ProbeReport {
	return ProbeReport{
		Probes: []results.Probe{{Name: "io-verify", OK: ok, Metrics: map[string]float64{"promised_files": 3, "bytes_verified": 2 << 20}}},
		Lost:   lost,
	}
}

// TestCrashCheckPasses: the power is cut during the IO probe, the cell boots
// again on the same scratch disk, the promises verify, the rebooted machine
// shuts down and its scratch disk is checked: pass, with every phase, both
// machines' artifacts and a finding that says what was verified.
func TestCrashCheckPasses(t *testing.T) {
	fake, f, out := runCrash(t, []matrix.Cell{crashCell("cc")}, map[string]*script{
		"cc": {probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}, verify: verified(true)},
	})
	if len(f.Runs) != 1 {
		t.Fatalf("runs: %+v", f.Runs)
	}
	r := f.Runs[0]
	if r.Verdict != results.Pass {
		t.Fatalf("verdict %s (%s), findings %+v", r.Verdict, r.Reason, r.Findings)
	}
	var phases []string
	for _, p := range r.Phases {
		phases = append(phases, p.Name)
	}
	want := []string{PhasePrepare, PhaseBoot, PhaseDocker, PhaseProbes, PhasePowerCut, PhaseReboot, PhaseVerify, PhaseStop, PhaseCheck}
	if !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if fake.boots != 2 {
		t.Errorf("boots %d, want 2", fake.boots)
	}
	for _, key := range []string{"agent", crashKeyPrefix + "agent", "probes-power-cut", "probes-verify", "checker"} {
		if _, ok := r.Artifacts[key]; !ok {
			t.Errorf("artifact %q missing: %v", key, r.Artifacts)
		}
	}
	if r.Artifacts[crashKeyPrefix+"agent"] != filepath.Join(RunDir("cc", 1), crashDir, "agent.log") {
		t.Errorf("rebooted agent log at %q", r.Artifacts[crashKeyPrefix+"agent"])
	}
	if r.Checker == nil || !r.Checker.Clean {
		t.Errorf("checker %+v, want the rebooted machine's scratch checked clean", r.Checker)
	}
	var summary string
	for _, fd := range r.Findings {
		if fd.Category == "crash-check" {
			summary = fd.Title
		}
	}
	for _, w := range []string{"power cut", "4.0 MiB written, 12 fsyncs", "3 promised file(s), 2.0 MiB verified intact", "not counted"} {
		if !strings.Contains(summary, w) {
			t.Errorf("crash-check finding %q lacks %q", summary, w)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(out, "runs", "*", "*", "*", "scratch.img")); len(m) != 0 {
		t.Errorf("scratch images left: %v", m)
	}
	for _, m := range fake.machines {
		if !m.closed {
			t.Errorf("machine in %s not closed", m.req.Dir)
		}
	}
}

// TestCrashCheckLostPromise: a promised block missing after the reboot is
// data-loss naming the file and offset; a panic on the rebooted machine's
// console is a kernel-crash marked as after the power cut.
func TestCrashCheckLostPromise(t *testing.T) {
	_, f, _ := runCrash(t, []matrix.Cell{crashCell("lost"), crashCell("panic")}, map[string]*script{
		"lost":  {verify: verified(false, "io-verify: /data/vol/io/seq-3 at offset 8192: missing-block: expected gen 4, found zeroes")},
		"panic": {verify: verified(true), rebootConsole: "Kernel panic - not syncing: jbd2 replay\n"},
	})
	by := map[string]results.Run{}
	for _, r := range f.Runs {
		by[r.Cell] = r
	}
	if r := by["lost"]; r.Verdict != results.DataLoss || !strings.Contains(r.Reason, "seq-3 at offset 8192") {
		t.Errorf("lost: %s (%s), want data-loss naming the file and offset", r.Verdict, r.Reason)
	}
	if r := by["panic"]; r.Verdict != results.KernelCrash || !strings.Contains(r.Reason, "after power cut: Kernel panic") {
		t.Errorf("panic: %s (%s), want kernel-crash after the power cut", r.Verdict, r.Reason)
	}
}

// TestNoCheckBeforeTheScratchDiskIsReady: a guest that never got dockerd up
// may never have made its scratch filesystem; checking that disk would
// report damage that is not there, so it is not checked.
func TestNoCheckBeforeTheScratchDiskIsReady(t *testing.T) {
	fake := newFake(map[string]*script{"early": {dockerErr: errors.New("boot failed after booting: agent: modprobe overlay failed"), scratchDirty: true}})
	f, err := Run(context.Background(), []matrix.Cell{testCell("early")}, Options{
		Provider: fake, Prober: fakeProber{fake}, Checker: CheckerFunc(fakeChecker), Out: t.TempDir(), Parallel: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.Runs[0]
	if r.Verdict != results.DockerFailure || r.Checker != nil {
		t.Errorf("got %s (%s), checker %+v; want docker-failure and no check", r.Verdict, r.Reason, r.Checker)
	}
}

// TestSlowPrepareIsNotTheCellsTime: building images on a cold, contended
// cache can take longer than the cell timeout; the timeout counts from
// boot, so the cell is not called a hang for the host's slowness.
func TestSlowPrepareIsNotTheCellsTime(t *testing.T) {
	fake := newFake(map[string]*script{"slow": {prepareDelay: 300 * time.Millisecond, probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}}})
	f, err := Run(context.Background(), []matrix.Cell{testCell("slow")}, Options{
		Provider: fake, Prober: fakeProber{fake}, Out: t.TempDir(), Parallel: 1, Timeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Runs[0]; r.Verdict != results.Pass {
		t.Errorf("got %s (%s), want pass: the cell timeout must not count the prepare phase", r.Verdict, r.Reason)
	}
}
