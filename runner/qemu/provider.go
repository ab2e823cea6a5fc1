package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/drivers"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// Provider adapts runner/qemu and internal/images to Provider: Prepare
// imports the cell's kernel, decides the cell's pending kernel checks and
// the kernel preflight (runner.KernelPreflight) and builds its rootfs
// (cached); Boot starts the VM.
type Provider struct {
	Cache *images.Cache
	// CacheDir holds the initramfs cache and built helper binaries.
	CacheDir string
	Accel    Accel
	// QEMU is the qemu-system binary (default: runner/qemu's, qemu-system-x86_64 on PATH).
	QEMU string
	// Watchdog, BootTimeout, DockerTimeout, ShutdownTimeout: zero takes runner/qemu's defaults.
	Watchdog, BootTimeout, DockerTimeout, ShutdownTimeout time.Duration

	mu       sync.Mutex
	prepared map[string]cellImages // by run dir
}

type cellImages struct {
	kernel    *images.Kernel
	rootfs    *images.Rootfs
	preflight []results.Finding // the kernel preflight's warnings
}

var _ runner.Provider = (*Provider)(nil)

// Name implements runner.Provider.
func (p *Provider) Name() string { return "qemu" }

// WritesConsoleLog implements runner.ConsoleLogWriter: runner/qemu writes
// console.log into the run directory from the first byte.
func (p *Provider) WritesConsoleLog() bool { return true }

// Prepare implements runner.Provider.
func (p *Provider) Prepare(ctx context.Context, req runner.Request) error {
	logf, err := os.Create(filepath.Join(req.Dir, "prepare.log"))
	if err != nil {
		return runner.Infra("prepare log", err)
	}
	defer logf.Close()
	k, err := p.Cache.Kernel(ctx, req.Cell.Kernel)
	if err != nil {
		return imagesError("kernel", err)
	}
	kernel, err := runner.ReadKernel(runner.KernelFiles{Release: k.Release, Config: k.Config, ModulesDir: k.ModulesDir})
	if err != nil {
		return err
	}
	warnings, err := runner.KernelPreflight(req.Cell, kernel)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(logf, "preflight: warning: %s\n", w.Excerpt)
	}
	r, err := p.Cache.RootfsWith(ctx, req.Cell.Distro, req.Cell.Docker, req.Cell.Settings.Packages, logf)
	if err != nil {
		return imagesError("rootfs", err)
	}
	p.mu.Lock()
	if p.prepared == nil {
		p.prepared = map[string]cellImages{}
	}
	p.prepared[req.Dir] = cellImages{kernel: k, rootfs: r, preflight: warnings}
	p.mu.Unlock()
	return nil
}

// imagesError: a suite without the package the spec names makes the cell
// unsupported here; everything else (mirror, tools) is infrastructure.
func imagesError(what string, err error) error {
	var pe *images.PackageError
	if errors.As(err, &pe) {
		return &runner.UnsupportedError{Reason: err.Error()}
	}
	return runner.Infra(what, err)
}

var _ runner.PackageChanger = (*Provider)(nil)

// AppliesPackageChanges implements runner.PackageChanger: Prepare builds
// the cell's rootfs with its package changes.
func (p *Provider) AppliesPackageChanges() {}

var _ runner.Preflighter = (*Provider)(nil)

// Preflight implements runner.Preflighter: the warnings of the kernel
// preflight Prepare ran for req.
func (p *Provider) Preflight(req runner.Request) []results.Finding {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prepared[req.Dir].preflight
}

// Boot implements runner.Provider.
func (p *Provider) Boot(ctx context.Context, req runner.Request) (runner.Machine, error) {
	p.mu.Lock()
	img, ok := p.prepared[req.Dir]
	delete(p.prepared, req.Dir)
	p.mu.Unlock()
	if !ok {
		return nil, runner.Infra("boot", errors.New("cell was not prepared"))
	}
	return p.start(ctx, req, img, false)
}

var _ runner.Rebooter = (*Provider)(nil)

// Reboot implements runner.Rebooter: prev's scratch.img moves into req.Dir and a
// new VM boots on it (Config.ReuseScratch).
func (p *Provider) Reboot(ctx context.Context, req runner.Request, prev runner.Machine) (runner.Machine, error) {
	pm, ok := prev.(*machine)
	if !ok {
		return nil, runner.Infra("reboot", fmt.Errorf("machine %T is not a QEMU machine", prev))
	}
	select {
	case <-pm.Exited():
	default:
		return nil, runner.Infra("reboot", errors.New("the previous machine is still running"))
	}
	if err := os.Rename(pm.vm.ScratchImage(), filepath.Join(req.Dir, "scratch.img")); err != nil {
		return nil, runner.Infra("reboot: take over the scratch disk", err)
	}
	return p.start(ctx, req, pm.img, true)
}

// start boots a VM for req; reuse boots on the scratch.img already in req.Dir.
func (p *Provider) start(ctx context.Context, req runner.Request, img cellImages, reuse bool) (runner.Machine, error) {
	s := req.Cell.Settings
	scratchFS := s.ScratchFS
	if scratchFS == "" {
		scratchFS = drivers.DefaultScratchFS(req.Cell.Driver)
	}
	// The VM lives until Close, not until the boot phase's context ends;
	// cancelling ctx while Start runs still aborts the start.
	vmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopWatch := context.AfterFunc(ctx, cancel)
	vm, err := Start(vmCtx, Config{
		QEMU: p.QEMU, Accel: p.Accel, CPUs: s.CPUs, MemoryMB: s.MemoryMB, Kernel: img.kernel, Rootfs: img.rootfs,
		CacheDir: p.CacheDir, Driver: req.Cell.Driver, ScratchFS: scratchFS, KeepScratch: true, ReuseScratch: reuse,
		Dir: req.Dir, Console: req.Console, Watchdog: p.Watchdog, BootTimeout: p.BootTimeout,
		DockerTimeout: p.DockerTimeout, ShutdownTimeout: p.ShutdownTimeout,
		Init: s.Init, Cgroup: s.Cgroup,
	})
	stopWatch()
	if err != nil {
		cancel()
		return nil, qemuError(err)
	}
	host := &results.Host{InitMode: vm.cfg.bootConfig().InitMode(), CgroupMode: s.Cgroup, HarnessChanges: harnessChanges(vm.cfg),
		PackagesAdded: img.rootfs.PackagesAdded, PackagesRemoved: img.rootfs.PackagesRemoved}
	if host.CgroupMode == "" {
		host.CgroupMode = agentproto.CgroupDistro
	}
	return &machine{vm: vm, cancel: cancel, scratchFS: vm.cfg.bootConfig().CheckedFS(), dir: req.Dir, img: img, host: host}, nil
}

// qemuError maps runner/qemu's typed errors onto the runner's (an
// unsupported cell already is a *runner.UnsupportedError).
func qemuError(err error) error {
	var ie *InfraError
	if errors.As(err, &ie) {
		return &runner.InfraError{Op: "qemu", Err: err}
	}
	return err // *BootError, *runner.UnsupportedError and others: evidence about the cell
}

type machine struct {
	vm        *VM
	cancel    context.CancelFunc
	scratchFS string
	dir       string
	img       cellImages // for a Reboot on the same scratch disk

	mu    sync.Mutex
	ready Ready
	host  *results.Host // filled in by WaitDocker
}

// harnessChanges is c.HarnessChanges in results' terms.
func harnessChanges(c Config) []results.HarnessChange {
	var out []results.HarnessChange
	for _, h := range c.HarnessChanges() {
		out = append(out, results.HarnessChange{What: h.What, Why: h.Why})
	}
	return out
}

// hostEvidence fills h from the guest's report and docker info.
func hostEvidence(ctx context.Context, r Ready, h *results.Host) error {
	h.Init, h.KernelCmdline, h.Accel = r.Init, r.Cmdline, string(r.Accel)
	cli, err := client.NewClientWithOpts(client.WithHost(r.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := cli.Info(ctx)
	if err != nil {
		return err
	}
	h.CgroupVersion, h.CgroupDriver, h.SecurityOptions = info.CgroupVersion, info.CgroupDriver, info.SecurityOptions
	h.RuncVersion, h.ContainerdVersion = info.RuncCommit.ID, info.ContainerdCommit.ID
	if v, err := cli.ServerVersion(ctx); err == nil {
		for _, c := range v.Components {
			switch strings.ToLower(c.Name) {
			case "runc":
				h.RuncVersion = c.Version
			case "containerd":
				h.ContainerdVersion = c.Version
			}
		}
	}
	return nil
}

func (m *machine) WaitDocker(ctx context.Context) (string, error) {
	r, err := m.vm.WaitDockerReady(ctx)
	if err != nil {
		return "", qemuError(err)
	}
	host := *m.host
	if err := hostEvidence(ctx, r, &host); err != nil {
		m.vm.Logf("host evidence: docker info: %v", err)
	}
	m.mu.Lock()
	m.ready = r
	m.host = &host
	m.mu.Unlock()
	return r.DockerHost, nil
}

func (m *machine) Ping(ctx context.Context) error {
	m.mu.Lock()
	host := m.ready.DockerHost
	m.mu.Unlock()
	if host == "" {
		return errors.New("dockerd never became ready")
	}
	if err := dockerExitError(m.vm.DockerExits()); err != nil {
		return err
	}
	if err := dockerCheckError(m.vm.Command(ctx, agentproto.Command{Op: agentproto.OpDockerCheck})); err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx)
	return err
}

// dockerExitError is how a dockerd that exited after docker-ready shows
// up in Ping, even when its init started a new one that answers: under
// init: systemd docker.service restarts dockerd, and the containers the old
// one ran are gone — a host where that happens fails its workloads, so the
// run is a docker-failure with the guest's report as the evidence. nil when
// dockerd never exited.
func dockerExitError(exits []string) error {
	if len(exits) == 0 {
		return nil
	}
	more := ""
	if len(exits) > 1 {
		more = fmt.Sprintf(" (and %d more exit(s))", len(exits)-1)
	}
	return fmt.Errorf("dockerd exited during the run and its init restarted it; the containers it ran were lost: %s%s", exits[0], more)
}

// dockerCheckError turns the guest's answer to OpDockerCheck into Ping's
// error: the agent saying the dockerd that became ready is gone is the same
// docker-failure as a reported exit (the report may still be on its way when
// the probes end). A command that got no answer decides nothing here: the
// API ping that follows tells whether dockerd answers.
func dockerCheckError(err error) error {
	var ae *AgentError
	if errors.As(err, &ae) {
		return fmt.Errorf("dockerd exited during the run and its init restarted it; the containers it ran were lost: %s", ae.Reason)
	}
	return nil
}

func (m *machine) Exited() <-chan struct{} { return m.vm.Exited() }

var _ runner.ArtifactWriter = (*machine)(nil)

// ArtifactErr implements runner.ArtifactWriter.
func (m *machine) ArtifactErr() error { return m.vm.ArtifactErr() }

var _ runner.FaultTarget = (*machine)(nil)

// GuestCommand implements runner.FaultTarget.
func (m *machine) GuestCommand(ctx context.Context, c agentproto.Command) error {
	return m.vm.Command(ctx, c)
}

// InjectIOErrors implements runner.FaultTarget: QEMU blkdebug armed through QMP.
func (m *machine) InjectIOErrors(ctx context.Context) (string, error) {
	e, err := m.vm.InjectIOErrors(ctx)
	if err != nil {
		return "", err
	}
	return e.String(), nil
}

// Freeze implements runner.FaultTarget: SIGSTOP to QEMU.
func (m *machine) Freeze() error { return m.vm.Freeze() }

// qemuExits maps how QEMU ended onto the runner's exit reasons.
var qemuExits = map[ExitReason]runner.ExitReason{
	ExitSelf:        runner.ExitCrashed,
	ExitShutdown:    runner.ExitShutdown,
	ExitKilled:      runner.ExitKilled,
	ExitCanceled:    runner.ExitKilled,
	ExitWatchdog:    runner.ExitHang,
	ExitKVMFallback: runner.ExitInfra,
	ExitHostIOError: runner.ExitInfra,
}

func (m *machine) Exit() runner.Exit {
	select {
	case <-m.vm.Exited():
	default:
		return runner.Exit{}
	}
	e := m.vm.Wait()
	r, ok := qemuExits[e.Reason]
	if !ok {
		r = runner.ExitInfra
	}
	return runner.Exit{Reason: r, Detail: e.String()}
}

func (m *machine) Shutdown(ctx context.Context) error {
	e := m.vm.Shutdown(ctx)
	if e.Reason != ExitShutdown {
		return fmt.Errorf("guest did not power off: %s", e)
	}
	return nil
}

func (m *machine) Kill() error {
	m.vm.Kill()
	m.vm.Wait()
	return nil
}

func (m *machine) Scratch() runner.Scratch {
	return runner.Scratch{Path: m.vm.ScratchImage(), FS: m.scratchFS}
}

func (m *machine) Process() runner.Process {
	p, err := runner.ProcessOf(m.vm.PID(), true)
	if err != nil {
		return runner.Process{}
	}
	return p
}

// qemuArtifacts are the files runner/qemu writes into the run directory.
var qemuArtifacts = map[string]string{
	"console": "console.log", "agent": "agent.log", "dockerd": "dockerd.log",
	"qemu-stderr": "qemu-stderr.log", "qemu-cmdline": "qemu-cmdline.txt",
	"console-kvm-attempt": "console-kvm-attempt.log", "prepare": "prepare.log",
	"journal": "journal.log",
}

func (m *machine) Artifacts() map[string]string {
	return runner.ExistingArtifacts(m.dir, qemuArtifacts)
}

func (m *machine) Info() runner.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return runner.Info{KernelRelease: m.ready.KernelRelease, DockerServer: m.ready.DockerVersion, Host: m.host}
}

func (m *machine) Close() error {
	err := m.vm.Close()
	m.cancel()
	return err
}
