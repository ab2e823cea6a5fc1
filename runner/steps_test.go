package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// stepFake is the rebooting fake with a failing Reboot or a rebooted
// machine that plays another script, and machines that take faults.
type stepFake struct {
	rebootingFake
	rebootErr    error
	rebootScript *script // the rebooted machine's script (nil: the first one's)
}

func (p stepFake) Boot(ctx context.Context, req Request) (Machine, error) {
	m, err := p.rebootingFake.Boot(ctx, req)
	if err != nil {
		return nil, err
	}
	return faultable{m.(*fakeMachine)}, nil
}

func (p stepFake) Reboot(ctx context.Context, req Request, prev Machine) (Machine, error) {
	if p.rebootErr != nil {
		fmt.Fprint(req.Console, "Kernel panic - not syncing: VFS: unable to mount root fs\n")
		return nil, p.rebootErr
	}
	m, err := p.rebootingFake.Reboot(ctx, req, prev.(faultable).fakeMachine)
	if err != nil {
		return nil, err
	}
	if p.rebootScript != nil {
		m.(*fakeMachine).s = p.rebootScript
	}
	return m, nil
}

// faultable is a fake machine that takes faults (and injects none).
type faultable struct{ *fakeMachine }

func (faultable) GuestCommand(context.Context, agentproto.Command) error { return nil }
func (faultable) Freeze() error                                          { return nil }
func (faultable) InjectIOErrors(context.Context) (string, error)         { return "", nil }

// verifyFails is the crash prober whose re-verification fails in the harness.
type verifyFails struct{ crashProber }

func (verifyFails) VerifyAfterCrash(context.Context, VerifyRequest) (ProbeReport, error) {
	return ProbeReport{}, Infra("verify", errors.New("probe image gone"))
}

// ioEndsEarly is the crash prober whose kept IO probe fails before its
// container started, so before the cut.
type ioEndsEarly struct{ crashProber }

func (p ioEndsEarly) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	if !req.KeepIO {
		return p.crashProber.RunProbes(ctx, req)
	}
	return ProbeReport{Probes: []results.Probe{{Name: "io", Errors: []string{"disk full"}}}}, errors.New("io: disk full")
}

// flipProber is the crash prober whose kept IO probe writes for its
// duration and ends by itself, as before the flip-data fault's shutdown.
type flipProber struct{ crashProber }

func (p flipProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	if !req.KeepIO {
		return p.crashProber.RunProbes(ctx, req)
	}
	return ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}, os.WriteFile(req.RecordsPath, nil, 0o644)
}

var updateSteps = flag.Bool("update-steps", false, "rewrite testdata/steps.golden")

// unstable is what differs between two runs of the same script: timings,
// run IDs and what the host's debugfs says about a file that is no image.
var unstable = regexp.MustCompile(`[0-9.]+m?s after|(cut|flip)[0-9]+[0-9a-f]{6}|from the image: .*`)

// runSummary is what results.json says about a run beyond its phases and
// verdict, without what differs between two runs.
func runSummary(r results.Run, out string) string {
	stable := func(s string) string {
		return unstable.ReplaceAllStringFunc(strings.ReplaceAll(s, out, "$OUT"), func(m string) string {
			switch {
			case strings.HasSuffix(m, " after"):
				return "N after"
			case strings.HasPrefix(m, "from the image"):
				return "from the image: …"
			}
			return "RUNID"
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  reason: %s\n", stable(r.Reason))
	var keys []string
	for k, v := range r.Artifacts {
		keys = append(keys, k+"="+v)
	}
	slices.Sort(keys)
	fmt.Fprintf(&b, "  artifacts: %s\n", strings.Join(keys, " "))
	for _, p := range r.Phases {
		if p.Error != "" {
			fmt.Fprintf(&b, "  %s error: %s\n", p.Name, stable(p.Error))
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  finding: %s/%s/%s %s\n", f.Source, f.Category, f.Severity, stable(f.Title))
	}
	fmt.Fprintf(&b, "  probes: %d, kernel %q, docker %q, checker %v\n", len(r.Probes), r.KernelRelease, r.DockerServer, r.Checker != nil)
	return b.String()
}

// phaseLine is a run's phases as "name" or "name!" (it recorded an error).
func phaseLine(r results.Run) string {
	var s []string
	for _, p := range r.Phases {
		if p.Error != "" {
			s = append(s, p.Name+"!")
		} else {
			s = append(s, p.Name)
		}
		if p.Start.IsZero() || p.Duration < 0 {
			s = append(s, "(untimed)")
		}
	}
	return strings.Join(s, " ")
}

// TestStepsRecordTheirPhases ends an attempt in each of its steps and
// checks the phases it recorded (names, order, which one failed), the
// verdict and the reason: what results.json says about an early end.
func TestStepsRecordTheirPhases(t *testing.T) {
	okProbe := ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}
	crash := func(c matrix.Cell) matrix.Cell { c.Settings.CrashCheck = true; return c }
	flip := func(c matrix.Cell) matrix.Cell { c.Settings.Faults = []string{flipDataFault}; return c }
	tests := []struct {
		name    string
		cell    func(matrix.Cell) matrix.Cell
		script  script
		fake    stepFake
		prober  func(crashProber) Prober
		checker Checker
		phases  string
		verdict results.Verdict
		reason  string
	}{
		{name: "prepare", script: script{prepareErr: errors.New("mmdebstrap failed")},
			phases: "prepare!", verdict: results.InfraError, reason: "mmdebstrap"},
		{name: "prepare-unsupported", script: script{prepareErr: &UnsupportedError{Reason: "no such kernel"}},
			phases: "prepare!", verdict: results.Unsupported, reason: "no such kernel"},
		{name: "boot", script: script{bootErrs: []error{errBoot}},
			phases: "prepare boot!", verdict: results.InfraError, reason: "could not start"},
		{name: "docker-ready", script: script{dockerErr: errors.New("dockerd did not answer")},
			phases: "prepare boot docker-ready! shutdown", verdict: results.DockerFailure, reason: "did not answer"},
		{name: "probes", script: script{probes: okProbe, probeErr: errors.New("io: container exited 1")},
			phases: "prepare boot docker-ready probes! shutdown check", verdict: results.ProbeFailure, reason: "container exited 1"},
		{name: "probes-infra", script: script{probes: okProbe, probeErr: Infra("probe image", errors.New("no such file"))},
			phases: "prepare boot docker-ready probes! shutdown check", verdict: results.InfraError, reason: "no such file"},
		{name: "shutdown", script: script{probes: okProbe, shutdownErr: errors.New("guest ignored ACPI")},
			phases: "prepare boot docker-ready probes shutdown!", verdict: results.Hang, reason: "ACPI"},
		{name: "check", script: script{probes: okProbe},
			checker: CheckerFunc(func(context.Context, Scratch) (*results.Checker, error) { return nil, errors.New("e2fsck: not found") }),
			phases:  "prepare boot docker-ready probes shutdown check!", verdict: results.InfraError, reason: "e2fsck: not found"},
		{name: "power-cut", cell: crash, script: script{probes: okProbe},
			prober: func(p crashProber) Prober { return ioEndsEarly{p} },
			phases: "prepare boot docker-ready probes power-cut!", verdict: results.ProbeFailure, reason: "disk full"},
		{name: "reboot", cell: crash, script: script{probes: okProbe}, fake: stepFake{rebootErr: errBoot},
			phases: "prepare boot docker-ready probes power-cut reboot!", verdict: results.KernelCrash, reason: "after power cut: Kernel panic"},
		{name: "reboot-docker", cell: crash, script: script{probes: okProbe},
			fake:   stepFake{rebootScript: &script{dockerErr: errors.New("dockerd: failed to mount overlay")}},
			phases: "prepare boot docker-ready probes power-cut reboot! shutdown check", verdict: results.DockerFailure, reason: "after the power cut: dockerd: failed to mount"},
		{name: "verify", cell: crash, script: script{probes: okProbe},
			prober: func(p crashProber) Prober { return verifyFails{p} },
			phases: "prepare boot docker-ready probes power-cut reboot verify! shutdown check", verdict: results.InfraError, reason: "probe image gone"},
		{name: "corrupt", cell: flip, script: script{probes: okProbe},
			prober: func(p crashProber) Prober { return flipProber{p} },
			phases: "prepare boot docker-ready probes corrupt!", verdict: results.InfraError, reason: "in corrupt: infrastructure: harness: read the IO probe"},
	}
	var golden strings.Builder
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testCell(tc.name)
			if tc.cell != nil {
				c = tc.cell(c)
			}
			s := tc.script
			fake := tc.fake
			fake.rebootingFake = rebootingFake{newFake(map[string]*script{tc.name: &s})}
			cp := crashProber{fakeProber{fake.fakeProvider}}
			var prober Prober = cp
			if tc.prober != nil {
				prober = tc.prober(cp)
			}
			checker := tc.checker
			if checker == nil {
				checker = CheckerFunc(fakeChecker)
			}
			out := t.TempDir()
			f, err := Run(context.Background(), []matrix.Cell{c}, Options{
				Provider: fake, Prober: prober, Checker: checker, Console: newLineScanner,
				Out: out, Parallel: 1, Retries: -1, ShutdownTimeout: time.Second, PowerCutAfter: 10 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			r := readResults(t, out).Runs[0]
			if got := phaseLine(r); got != tc.phases {
				t.Errorf("phases %q, want %q", got, tc.phases)
			}
			if r.Verdict != tc.verdict || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("verdict %s (%q), want %s containing %q", r.Verdict, r.Reason, tc.verdict, tc.reason)
			}
			if len(f.Runs) != 1 || f.Runs[0].Attempt != 1 {
				t.Errorf("runs %+v, want one attempt", f.Runs)
			}
			for _, m := range fake.machines {
				if !m.closed {
					t.Errorf("machine in %s not closed", m.req.Dir)
				}
			}
			fmt.Fprintf(&golden, "%s: %s %s\n%s", tc.name, r.Verdict, phaseLine(r), runSummary(r, out))
			_ = os.RemoveAll(out)
		})
	}
	// The rest of what results.json says, as the runner said it when the
	// attempt was split into steps.
	path := filepath.Join("testdata", "steps.golden")
	if *updateSteps {
		if err := os.WriteFile(path, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := golden.String(); got != string(want) {
		t.Errorf("results differ from %s (-update-steps rewrites it):\n%s", path, got)
	}
}

// journalCloser is the rebooting fake whose machines have a host process
// and which closes the journal once it booted (or rebooted) a machine, so
// that journalling the machine's process fails.
type journalCloser struct {
	rebootingFake
	j        *journal
	atReboot bool // close it at the reboot instead of the first boot
}

// withPid is a machine whose host process is this test's.
type withPid struct{ *fakeMachine }

func (withPid) Process() Process { return Process{Pid: os.Getpid()} }

func (p journalCloser) Boot(ctx context.Context, req Request) (Machine, error) {
	m, err := p.rebootingFake.Boot(ctx, req)
	if err != nil {
		return nil, err
	}
	if !p.atReboot {
		_ = p.j.f.Close()
	}
	return withPid{m.(*fakeMachine)}, nil
}

func (p journalCloser) Reboot(ctx context.Context, req Request, prev Machine) (Machine, error) {
	m, err := p.rebootingFake.Reboot(ctx, req, prev.(withPid).fakeMachine)
	if err != nil {
		return nil, err
	}
	_ = p.j.f.Close()
	return withPid{m.(*fakeMachine)}, nil
}

// TestJournalFailureAfterBoot: a machine whose process cannot be journalled
// ends the attempt in the boot step (a resumed controller could not kill
// it), but after a crash check's reboot the rebooted machine is still shut
// down and checked; both are infra-errors and every machine is closed.
func TestJournalFailureAfterBoot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		atReboot bool
		phases   string
		checked  bool
	}{
		{"boot", false, "prepare boot", false},
		{"reboot", true, "prepare boot docker-ready probes power-cut reboot! shutdown check", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			j, err := openJournal(filepath.Join(out, JournalName))
			if err != nil {
				t.Fatal(err)
			}
			fake := journalCloser{rebootingFake: rebootingFake{newFake(nil)}, j: j, atReboot: tc.atReboot}
			r := &run{journal: j, opts: Options{
				Provider: fake, Prober: crashProber{fakeProber{fake.fakeProvider}}, Checker: CheckerFunc(fakeChecker),
				Console: newLineScanner, Out: out, ShutdownTimeout: time.Second, PowerCutAfter: 10 * time.Millisecond,
			}}
			c := testCell(tc.name)
			c.Settings.CrashCheck = true
			run, ok := r.attempt(context.Background(), job{cell: c, repeat: 1}, 1, nopProgress{})
			if !ok {
				t.Fatal("attempt interrupted")
			}
			if got := phaseLine(run); got != tc.phases {
				t.Errorf("phases %q, want %q", got, tc.phases)
			}
			if run.Verdict != results.InfraError || !strings.Contains(run.Reason, "journal") {
				t.Errorf("verdict %s (%q), want infra-error naming the journal", run.Verdict, run.Reason)
			}
			if (run.Checker != nil) != tc.checked {
				t.Errorf("checker %+v, want checked %v", run.Checker, tc.checked)
			}
			for _, m := range fake.machines {
				if !m.closed {
					t.Errorf("machine in %s not closed", m.req.Dir)
				}
			}
		})
	}
}
