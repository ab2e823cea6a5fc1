package vagrant

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
)

// oneCell is one cell booted through Vagrant: the project-built Debian 12
// box with its 6.1 kernel, bookworm's docker.io, overlay2 on ext4.
var oneCell = testutil.SmallSpec{Kernel: "box: debian12-k6.1"}.YAML()

// crashingProber runs the real probes, then panics the guest with sysrq
// through ssh and waits for the domain to stop.
type crashingProber struct {
	t     *testing.T
	inner runner.Prober
	prov  *recordingProvider
}

func (c crashingProber) RunProbes(ctx context.Context, req runner.ProbeRequest) (runner.ProbeReport, error) {
	rep, err := c.inner.RunProbes(ctx, req)
	c.t.Logf("probes through %s: %d probes, failed %v, err %v", req.DockerHost, len(rep.Probes), rep.FailedOps, err)
	m := c.prov.last()
	// The ssh session dies with the guest; the runner ends the phase as
	// soon as the console shows the panic, which kills it too.
	_, _ = m.(SSHer).SSH(ctx, "echo c | sudo tee /proc/sysrq-trigger")
	select {
	case <-m.Exited():
	case <-time.After(3 * time.Minute):
		c.t.Errorf("domain still runs 3 minutes after the sysrq crash")
	}
	return rep, err
}

// recordingProvider keeps the machine it booted last.
type recordingProvider struct {
	*Provider
	mu sync.Mutex
	m  runner.Machine
}

func (r *recordingProvider) Boot(ctx context.Context, req runner.Request) (runner.Machine, error) {
	m, err := r.Provider.Boot(ctx, req)
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
	return m, err
}

func (r *recordingProvider) last() runner.Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m
}

// libvirtObjects lists the names of every domain, volume of the default
// pool and network.
func libvirtObjects(t *testing.T, p *Provider) (doms, vols, nets []string) {
	t.Helper()
	ctx := context.Background()
	names := func(out string) []string {
		var r []string
		for _, l := range strings.Split(out, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				r = append(r, l)
			}
		}
		slices.Sort(r)
		return r
	}
	out, err := p.virsh(ctx, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	doms = names(out)
	if out, err := p.virsh(ctx, "vol-list", "default"); err == nil {
		for _, l := range strings.Split(out, "\n")[2:] {
			if f := strings.Fields(l); len(f) > 0 {
				vols = append(vols, f[0])
			}
		}
	}
	out, err = p.virsh(ctx, "net-list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	return doms, vols, names(out)
}

// startLibvirt starts virtlogd and libvirtd when they do not answer (there is
// no systemd here); they are system daemons and stay running.
func startLibvirt(t *testing.T) {
	ctx := context.Background()
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"virsh", "-c", "qemu:///system", "version"}}); err == nil {
		return
	}
	for _, d := range []string{"virtlogd", "libvirtd"} {
		if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{d, "-d"}}); err != nil {
			t.Fatalf("start %s: %v", d, err)
		}
	}
	for i := 0; i < 50; i++ {
		if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"virsh", "-c", "qemu:///system", "version"}}); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("libvirtd does not answer")
}

// TestIntegrationVagrantCrash boots one cell through Vagrant + libvirt (TCG),
// runs the io probe through the forwarded Docker API, panics the guest with
// sysrq and expects the runner to judge the captured serial console a
// kernel-crash; then nothing of the test is left in libvirt.
func TestIntegrationVagrantCrash(t *testing.T) {
	p, cells, out := setup(t, 2048)
	if err := p.CheckTools(context.Background()); err != nil {
		t.Fatal(err)
	}
	rp := &recordingProvider{Provider: p}
	start := time.Now()
	f, err := runner.Run(context.Background(), cells, runner.Options{
		Provider: rp,
		Prober:   crashingProber{t: t, inner: runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")}, prov: rp},
		Console:  runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 1, Retries: -1, Progress: runner.NewPlainProgress(testutil.LogWriter(t)),
	})
	t.Logf("run took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(f.Runs) != 1 {
		t.Fatalf("%d runs", len(f.Runs))
	}
	r := f.Runs[0]
	t.Logf("%s: %s (%s) kernel %s docker %s", r.Cell, r.Verdict, r.Reason, r.KernelRelease, r.DockerServer)
	for _, ph := range r.Phases {
		t.Logf("  %-12s %8s %s", ph.Name, ph.Duration.Round(100*time.Millisecond), ph.Error)
	}
	if r.Verdict != results.KernelCrash {
		t.Errorf("verdict %s (%s), want %s; findings %+v", r.Verdict, r.Reason, results.KernelCrash, r.Findings)
	}
	if r.KernelRelease == "" || !strings.HasPrefix(r.DockerServer, "20.10.24") {
		t.Errorf("kernel %q docker %q", r.KernelRelease, r.DockerServer)
	}
	console, err := os.ReadFile(filepath.Join(out, r.Artifacts["serial"]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(console), "sysrq: Trigger a crash") || !strings.Contains(string(console), "Kernel panic") {
		t.Errorf("serial file lacks the sysrq panic; tail:\n%s", tailOf(string(console), 2000))
	}
	if r.Artifacts["probes"] == "" {
		t.Errorf("no probes artifact: %v", r.Artifacts)
	}
	// setup's cleanup checks that nothing of the test is left.
}

// TestIntegrationVagrantPass is the clean path through Vagrant + libvirt
// (TCG): one cell on a project-built box, provisioned the way a user sets
// Docker up, the real io probe through the forwarded Docker API, then a
// clean shutdown and the host checker. A box that lacks what a standard
// host has fails here (issue 15: no apparmor userland, every container
// start failed); nothing of the run may be left behind.
func TestIntegrationVagrantPass(t *testing.T) {
	p, cells, out := setup(t, 2048)
	start := time.Now()
	f, err := runner.Run(context.Background(), cells, runner.Options{
		Provider: p, Prober: runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console: runner.ConsoleAnalyzer(), Checker: runner.FSChecker(),
		Out: out, Parallel: 1, Retries: -1, Progress: runner.NewPlainProgress(testutil.LogWriter(t)),
	})
	t.Logf("run took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(f.Runs) != 1 {
		t.Fatalf("%d runs", len(f.Runs))
	}
	r := f.Runs[0]
	t.Logf("%s: %s (%s) kernel %s docker %s", r.Cell, r.Verdict, r.Reason, r.KernelRelease, r.DockerServer)
	for _, ph := range r.Phases {
		t.Logf("  %-12s %8s %s", ph.Name, ph.Duration.Round(100*time.Millisecond), ph.Error)
	}
	if r.Verdict != results.Pass {
		t.Errorf("verdict %s (%s), want %s; findings %+v", r.Verdict, r.Reason, results.Pass, r.Findings)
	}
	for _, fd := range r.Findings {
		if fd.Severity.Rank() >= results.SevError.Rank() {
			t.Errorf("%s finding from %s: %s\n%s", fd.Severity, fd.Source, fd.Title, fd.Excerpt)
		} else {
			t.Logf("%s finding from %s: %s", fd.Severity, fd.Source, fd.Title)
		}
	}
	if r.KernelRelease == "" || !strings.HasPrefix(r.DockerServer, "20.10.24") {
		t.Errorf("kernel %q docker %q", r.KernelRelease, r.DockerServer)
	}
	if len(r.Probes) == 0 {
		t.Errorf("no probe records in the results")
	}
	for _, pr := range r.Probes {
		t.Logf("probe %s ok %v metrics %v", pr.Name, pr.OK, pr.Metrics)
		if !pr.OK || len(pr.Errors) > 0 {
			t.Errorf("probe %s failed: %v", pr.Name, pr.Errors)
		}
	}
	if r.Artifacts["probes"] == "" {
		t.Errorf("no probes artifact: %v", r.Artifacts)
	}
	switch c := r.Checker; {
	case c == nil:
		t.Errorf("no checker result")
	case !c.Clean || c.Tool != "e2fsck":
		t.Errorf("checker %s %v exit %d clean %v, want e2fsck clean:\n%s", c.Tool, c.Args, c.ExitCode, c.Clean, c.Output)
	default:
		t.Logf("checker: %s %v clean", c.Tool, c.Args)
	}
	// setup's cleanup checks that nothing of the test is left.
}

// setup gates an integration test of the provider, starts libvirt, plans
// the one cell and returns a provider, the cells and a results directory.
// Its cleanup, which runs on every path out of the test (t.Fatal too),
// destroys whatever a run under out left and then fails the test if any
// domain, volume, network, staged kernel or process of it was left behind
// (the box's base volume, shared by the package's tests, is removed by
// TestMain).
func setup(t *testing.T, scratchMiB int) (*Provider, []matrix.Cell, string) {
	t.Helper()
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresVagrant(t)
	testutil.RequiresLibvirt(t)
	testutil.RequiresBinary(t, "mmdebstrap", "qemu-img", "ssh", "e2fsck")
	startLibvirt(t)
	spec, err := matrix.Parse("one-cell.yaml", []byte(oneCell))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := spec.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 1 || cells[0].Status != matrix.StatusRunnable {
		t.Fatalf("want one runnable cell, plan: %+v", cells)
	}
	cache, err := images.New(testutil.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Cache: cache, Env: []string{"VAGRANT_HOME=" + filepath.Join(testutil.CacheDir(), "vagrant-home")}, ScratchMiB: scratchMiB}
	// The box is built (or found in the cache) before the test's run: under
	// CI load its build can take longer than the cell's timeout, which
	// covers prepare, and the box is a fixture here, not what is tested.
	bctx, bcancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer bcancel()
	start := time.Now()
	if err := p.Prepare(bctx, runner.Request{Cell: cells[0], Repeat: 1, Dir: t.TempDir()}); err != nil {
		t.Fatalf("preparing the box: %v", err)
	}
	t.Logf("box ready in %s", time.Since(start).Round(time.Second))
	out := filepath.Join(t.TempDir(), "results")
	doms0, vols0, nets0 := libvirtObjects(t, p)
	staged0 := stagedFiles(t, p)
	qlogs0, _ := filepath.Glob(qemuLogPath("matrixctl-*"))
	qemus0 := qemuProcesses()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if removed, err := p.DestroyLeftovers(ctx, out); len(removed) > 0 || err != nil {
			t.Errorf("the test left domains %v behind (destroyed now; err %v)", removed, err)
		}
		recordUploadedBoxes(t, p, vols0)
		doms, vols, nets := libvirtObjects(t, p)
		if !slices.Equal(doms, doms0) {
			t.Errorf("domains before %v, after %v", doms0, doms)
		}
		if !slices.Equal(withoutBoxes(vols), withoutBoxes(vols0)) {
			t.Errorf("volumes before %v, after %v", vols0, vols)
		}
		if !slices.Equal(nets, nets0) {
			t.Errorf("networks before %v, after %v", nets0, nets)
		}
		if staged := stagedFiles(t, p); !slices.Equal(staged, staged0) {
			t.Errorf("staged kernels before %v, after %v", staged0, staged)
		}
		if qlogs, _ := filepath.Glob(qemuLogPath("matrixctl-*")); !slices.Equal(qlogs, qlogs0) {
			t.Errorf("libvirt QEMU logs before %v, after %v (the run directory keeps them)", qlogs0, qlogs)
		}
		if q := qemuProcesses(); !slices.Equal(q, qemus0) {
			t.Errorf("libvirt QEMU processes before %v, after %v", qemus0, q)
		}
		testutil.NoProcessesLeft(t, out)
		testutil.NoProcessesLeft(t, "/usr/bin/vagrant")
	})
	return p, cells, out
}

// stagedFiles lists the kernels and initrds staged in the provider's BootDir.
func stagedFiles(t *testing.T, p *Provider) []string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(p.bootDir(), "matrixctl-*"))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// ourDomain matches the names Boot gives domains (other packages' QEMU
// VMs are named matrixctl-* too, but not like this).
var ourDomain = regexp.MustCompile(`^matrixctl-[0-9a-f]{12}-default$`)

func isOurDomain(name string) bool { return ourDomain.MatchString(name) }

// qemuProcesses lists the QEMU processes libvirt runs for this provider's
// domains ("pid name"); libvirt gives them an environment of their
// own, so testutil's owner tag does not reach them.
func qemuProcesses() []string {
	entries, _ := os.ReadDir("/proc")
	var r []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if name, _, _ := strings.Cut(strings.TrimPrefix(a, "guest="), ","); a != name && isOurDomain(name) {
				r = append(r, e.Name()+" "+name)
			}
		}
	}
	slices.Sort(r)
	return r
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestIntegrationVagrantLeftovers boots a cell, waits for its dockerd,
// shuts it down cleanly and checks the scratch copy with the host checker,
// then abandons the domain the way a killed controller does (no Close: the
// domain stays defined with its volumes, as after --resume killed its qemu)
// and checks that DestroyLeftovers, which matrixctl run --resume calls,
// removes it.
func TestIntegrationVagrantLeftovers(t *testing.T) {
	p, cells, out := setup(t, 1024)
	dir := filepath.Join(out, "runs", cells[0].ID, "r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var console strings.Builder
	req := runner.Request{Cell: cells[0], Repeat: 1, Dir: dir, Console: &lockedBuilder{b: &console}}
	if err := p.Prepare(ctx, req); err != nil {
		t.Fatal(err)
	}
	m, err := p.Boot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if pr := m.Process(); pr.Pid == 0 {
		t.Errorf("no qemu process recorded for the journal")
	}
	dom := m.(*machine).st.Domain
	host, err := m.WaitDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(host, "tcp://127.0.0.1:") {
		t.Errorf("docker API at %s, want a loopback port", host)
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := m.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if e := m.Exit(); e.Reason != runner.ExitShutdown {
		t.Errorf("exit %+v, want shutdown", e)
	}
	sc := m.Scratch()
	res, err := runner.FSChecker().Check(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checker: %s %v exit %d clean %v", res.Tool, res.Args, res.ExitCode, res.Clean)
	if !res.Clean || sc.FS != "ext4" {
		t.Errorf("scratch %+v not clean: %s", sc, res.Output)
	}
	_ = os.Remove(sc.Path)
	// Abandon it as a killed controller does: its goroutines stop and its
	// children (the ssh forward) die with it (Pdeathsig); the domain stays.
	mm := m.(*machine)
	mm.tail.stop()
	mm.watchStop()
	_ = mm.forward.Kill()
	if !strings.Contains(console.String(), "matrixctl-provision: dockerd ready") {
		t.Errorf("the provisioning line did not reach the console stream:\n%s", tailOf(console.String(), 2000))
	}
	if !p.domainExists(ctx, dom) {
		t.Fatalf("domain %s is not defined", dom)
	}
	removed, err := p.DestroyLeftovers(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{dom}) {
		t.Errorf("removed %v, want [%s]", removed, dom)
	}
	again, err := p.DestroyLeftovers(ctx, out)
	if err != nil || len(again) != 0 {
		t.Errorf("second pass removed %v (%v)", again, err)
	}
	for _, f := range mm.st.Staged {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("staged %s is still there after DestroyLeftovers (%v)", f, err)
		}
	}
	// setup's cleanup checks that nothing else is left.
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// recordUploadedBoxes notes the base volumes of boxes uploaded into the
// pool during the test (not in vols0) for TestMain to remove: the tests
// share them, so each test does not pay for the upload again.
func recordUploadedBoxes(t *testing.T, p *Provider, vols0 []string) {
	t.Helper()
	_, vols, _ := libvirtObjects(t, p)
	uploaded.mu.Lock()
	defer uploaded.mu.Unlock()
	for _, v := range vols {
		if !slices.Contains(vols0, v) && isBoxVolume(v) {
			uploaded.names[v] = p
		}
	}
}

func isBoxVolume(v string) bool { return strings.Contains(v, "_vagrant_box_image_") }

// withoutBoxes filters box base volumes out of a volume list.
func withoutBoxes(vols []string) []string {
	return slices.DeleteFunc(slices.Clone(vols), isBoxVolume)
}

// uploaded are the box base volumes the tests uploaded; TestMain removes them.
var uploaded = struct {
	mu    sync.Mutex
	names map[string]*Provider
}{names: map[string]*Provider{}}

// TestMain removes the box base volumes the tests uploaded and fails the
// package if any of them cannot be removed.
func TestMain(m *testing.M) {
	code := m.Run()
	uploaded.mu.Lock()
	for v, p := range uploaded.names {
		name, _, _ := strings.Cut(v, "_vagrant_box_image_")
		if err := p.RemoveBox(context.Background(), name); err != nil {
			fmt.Fprintf(os.Stderr, "remove box %s: %v\n", name, err)
			code = 1
		}
		if out, err := p.virsh(context.Background(), "vol-list", "default"); err == nil && strings.Contains(out, v) {
			fmt.Fprintf(os.Stderr, "box volume %s is still in the default pool\n", v)
			code = 1
		}
	}
	uploaded.mu.Unlock()
	os.Exit(code)
}

// TestIntegrationVagrantInterruptDuringUp is Ctrl-C twice while `vagrant up`
// is still waiting for the guest: the run's context ends, vagrant up is
// killed as a group, and the domain it had created is destroyed anyway.
func TestIntegrationVagrantInterruptDuringUp(t *testing.T) {
	p, cells, out := setup(t, 1024)
	doms0, _, _ := libvirtObjects(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupted := make(chan string, 1)
	go func() {
		// Cancel as soon as a new domain of ours runs (vagrant up is then
		// waiting for the guest's ssh).
		for ctx.Err() == nil {
			if o, err := p.virsh(ctx, "list", "--name"); err == nil {
				for _, d := range strings.Fields(o) {
					if strings.HasPrefix(d, "matrixctl-") && !slices.Contains(doms0, d) {
						interrupted <- d
						cancel()
						return
					}
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	_, err := runner.Run(ctx, cells, runner.Options{
		Provider: p, Prober: runner.ProbesProber{Workdir: filepath.Join(testutil.CacheDir(), "probes")},
		Console: runner.ConsoleAnalyzer(), Out: out, Parallel: 1, Retries: -1,
	})
	select {
	case d := <-interrupted:
		t.Logf("interrupted while domain %s was running", d)
	default:
		t.Errorf("the run ended before its domain ran (Run: %v)", err)
	}
	if !errors.Is(err, runner.ErrInterrupted) {
		t.Errorf("Run: %v, want interrupted", err)
	}
	// setup's cleanup checks that nothing is left.
}
