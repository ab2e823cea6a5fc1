package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner/agentproto"
	"github.com/matrixctl/matrixctl/runner/images"
	"github.com/matrixctl/matrixctl/runner/qemu"
)

// QEMUProvider adapts runner/qemu and runner/images to Provider: Prepare
// imports the cell's kernel and builds its rootfs (cached) and decides the
// cell's pending kernel checks; Boot starts the VM.
type QEMUProvider struct {
	Cache *images.Cache
	// CacheDir holds the initramfs cache and built helper binaries.
	CacheDir string
	Accel    qemu.Accel
	// QEMU is the qemu-system binary (default: runner/qemu's, qemu-system-x86_64 on PATH).
	QEMU string
	// Watchdog, BootTimeout, DockerTimeout, ShutdownTimeout: zero takes runner/qemu's defaults.
	Watchdog, BootTimeout, DockerTimeout, ShutdownTimeout time.Duration

	mu       sync.Mutex
	prepared map[string]qemuImages // by run dir
}

type qemuImages struct {
	kernel *images.Kernel
	rootfs *images.Rootfs
}

var _ Provider = (*QEMUProvider)(nil)

// Name implements Provider.
func (p *QEMUProvider) Name() string { return "qemu" }

// WritesConsoleLog implements ConsoleLogWriter: runner/qemu writes
// console.log into the run directory from the first byte.
func (p *QEMUProvider) WritesConsoleLog() bool { return true }

// Prepare implements Provider.
func (p *QEMUProvider) Prepare(ctx context.Context, req Request) error {
	logf, err := os.Create(filepath.Join(req.Dir, "prepare.log"))
	if err != nil {
		return Infra("prepare log", err)
	}
	defer logf.Close()
	k, err := p.Cache.Kernel(ctx, req.Cell.Kernel)
	if err != nil {
		return imagesError("kernel", err)
	}
	if len(req.Cell.Pending) > 0 {
		config, err := readKernelConfig(k.Config)
		if err != nil {
			return Infra("read kernel config", err)
		}
		ok, reason := matrix.EvalKernelChecks(req.Cell.Pending, config, func(name string) bool { return hasModule(k.ModulesDir, name) })
		if !ok {
			return &UnsupportedError{Reason: fmt.Sprintf("kernel %s: %s", k.Release, reason)}
		}
	}
	r, err := p.Cache.Rootfs(ctx, req.Cell.Distro, req.Cell.Docker, logf)
	if err != nil {
		return imagesError("rootfs", err)
	}
	p.mu.Lock()
	if p.prepared == nil {
		p.prepared = map[string]qemuImages{}
	}
	p.prepared[req.Dir] = qemuImages{kernel: k, rootfs: r}
	p.mu.Unlock()
	return nil
}

// imagesError: a suite without the package the spec names makes the cell
// unsupported here; everything else (mirror, tools) is infrastructure.
func imagesError(what string, err error) error {
	var pe *images.PackageError
	if errors.As(err, &pe) {
		return &UnsupportedError{Reason: err.Error()}
	}
	return Infra(what, err)
}

// readKernelConfig parses CONFIG_X=y|m|"..." lines ("" path: empty config).
func readKernelConfig(path string) (map[string]string, error) {
	cfg := map[string]string{}
	if path == "" {
		return cfg, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			cfg[k] = v
		}
	}
	return cfg, sc.Err()
}

// hasModule reports whether the module tree has name.ko (also .ko.xz/.zst,
// and with - and _ treated alike as modprobe does).
func hasModule(dir, name string) bool {
	want := strings.ReplaceAll(name, "-", "_")
	found := false
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return nil
		}
		base := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if strings.HasSuffix(base, ext) && strings.ReplaceAll(strings.TrimSuffix(base, ext), "-", "_") == want {
				found = true
				return fs.SkipAll
			}
		}
		return nil
	})
	return found
}

// Boot implements Provider.
func (p *QEMUProvider) Boot(ctx context.Context, req Request) (Machine, error) {
	p.mu.Lock()
	img, ok := p.prepared[req.Dir]
	delete(p.prepared, req.Dir)
	p.mu.Unlock()
	if !ok {
		return nil, Infra("boot", errors.New("cell was not prepared"))
	}
	return p.start(ctx, req, img, false)
}

var _ Rebooter = (*QEMUProvider)(nil)

// Reboot implements Rebooter: prev's scratch.img moves into req.Dir and a
// new VM boots on it (qemu.Config.ReuseScratch).
func (p *QEMUProvider) Reboot(ctx context.Context, req Request, prev Machine) (Machine, error) {
	pm, ok := prev.(*qemuMachine)
	if !ok {
		return nil, Infra("reboot", fmt.Errorf("machine %T is not a QEMU machine", prev))
	}
	select {
	case <-pm.Exited():
	default:
		return nil, Infra("reboot", errors.New("the previous machine is still running"))
	}
	if err := os.Rename(pm.vm.ScratchImage(), filepath.Join(req.Dir, "scratch.img")); err != nil {
		return nil, Infra("reboot: take over the scratch disk", err)
	}
	return p.start(ctx, req, pm.img, true)
}

// start boots a VM for req; reuse boots on the scratch.img already in req.Dir.
func (p *QEMUProvider) start(ctx context.Context, req Request, img qemuImages, reuse bool) (Machine, error) {
	s := req.Cell.Settings
	scratchFS := s.ScratchFS
	if scratchFS == "" {
		scratchFS = matrix.DefaultScratchFS(req.Cell.Driver)
	}
	// The VM lives until Close, not until the boot phase's context ends;
	// cancelling ctx while Start runs still aborts the start.
	vmCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopWatch := context.AfterFunc(ctx, cancel)
	vm, err := qemu.Start(vmCtx, qemu.Config{
		QEMU: p.QEMU, Accel: p.Accel, CPUs: s.CPUs, MemoryMB: s.MemoryMB, Kernel: img.kernel, Rootfs: img.rootfs,
		CacheDir: p.CacheDir, Driver: req.Cell.Driver, ScratchFS: scratchFS, KeepScratch: true, ReuseScratch: reuse,
		Dir: req.Dir, Console: req.Console, Watchdog: p.Watchdog, BootTimeout: p.BootTimeout,
		DockerTimeout: p.DockerTimeout, ShutdownTimeout: p.ShutdownTimeout,
	})
	stopWatch()
	if err != nil {
		cancel()
		return nil, qemuError(err)
	}
	return &qemuMachine{vm: vm, cancel: cancel, scratchFS: checkedFS(req.Cell.Driver, scratchFS), dir: req.Dir, img: img}, nil
}

// checkedFS is what the host checker finds on a scratch disk: the thin
// pool's metadata for devicemapper's raw disk (thin_check), else the
// filesystem itself.
func checkedFS(driver, scratchFS string) string {
	if driver == "devicemapper" && scratchFS == "raw" {
		return "thin"
	}
	return scratchFS
}

// qemuError maps runner/qemu's typed errors onto the runner's.
func qemuError(err error) error {
	var ue *qemu.UnsupportedError
	var ie *qemu.InfraError
	switch {
	case errors.As(err, &ue):
		return &UnsupportedError{Reason: ue.Reason}
	case errors.As(err, &ie):
		return &InfraError{Op: "qemu", Err: err}
	}
	return err // *qemu.BootError and others: evidence about the cell
}

type qemuMachine struct {
	vm        *qemu.VM
	cancel    context.CancelFunc
	scratchFS string
	dir       string
	img       qemuImages // for a Reboot on the same scratch disk

	mu    sync.Mutex
	ready qemu.Ready
}

func (m *qemuMachine) WaitDocker(ctx context.Context) (string, error) {
	r, err := m.vm.WaitDockerReady(ctx)
	if err != nil {
		return "", qemuError(err)
	}
	m.mu.Lock()
	m.ready = r
	m.mu.Unlock()
	return r.DockerHost, nil
}

func (m *qemuMachine) Ping(ctx context.Context) error {
	m.mu.Lock()
	host := m.ready.DockerHost
	m.mu.Unlock()
	if host == "" {
		return errors.New("dockerd never became ready")
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx)
	return err
}

func (m *qemuMachine) Exited() <-chan struct{} { return m.vm.Exited() }

var _ ArtifactWriter = (*qemuMachine)(nil)

// ArtifactErr implements ArtifactWriter.
func (m *qemuMachine) ArtifactErr() error { return m.vm.ArtifactErr() }

var _ FaultTarget = (*qemuMachine)(nil)

// GuestCommand implements FaultTarget.
func (m *qemuMachine) GuestCommand(ctx context.Context, c agentproto.Command) error {
	return m.vm.Command(ctx, c)
}

// InjectIOErrors implements FaultTarget: QEMU blkdebug armed through QMP.
func (m *qemuMachine) InjectIOErrors(ctx context.Context) (string, error) {
	e, err := m.vm.InjectIOErrors(ctx)
	if err != nil {
		return "", err
	}
	return e.String(), nil
}

// Freeze implements FaultTarget: SIGSTOP to QEMU.
func (m *qemuMachine) Freeze() error { return m.vm.Freeze() }

// qemuExits maps how QEMU ended onto the runner's exit reasons.
var qemuExits = map[qemu.ExitReason]ExitReason{
	qemu.ExitSelf:        ExitCrashed,
	qemu.ExitShutdown:    ExitShutdown,
	qemu.ExitKilled:      ExitKilled,
	qemu.ExitCanceled:    ExitKilled,
	qemu.ExitWatchdog:    ExitHang,
	qemu.ExitKVMFallback: ExitInfra,
	qemu.ExitHostIOError: ExitInfra,
}

func (m *qemuMachine) Exit() Exit {
	select {
	case <-m.vm.Exited():
	default:
		return Exit{}
	}
	e := m.vm.Wait()
	r, ok := qemuExits[e.Reason]
	if !ok {
		r = ExitInfra
	}
	return Exit{Reason: r, Detail: e.String()}
}

func (m *qemuMachine) Shutdown(ctx context.Context) error {
	e := m.vm.Shutdown(ctx)
	if e.Reason != qemu.ExitShutdown {
		return fmt.Errorf("guest did not power off: %s", e)
	}
	return nil
}

func (m *qemuMachine) Kill() error {
	m.vm.Kill()
	m.vm.Wait()
	return nil
}

func (m *qemuMachine) Scratch() Scratch {
	return Scratch{Path: m.vm.ScratchImage(), FS: m.scratchFS}
}

func (m *qemuMachine) Process() Process {
	p, err := ProcessOf(m.vm.PID(), true)
	if err != nil {
		return Process{}
	}
	return p
}

// qemuArtifacts are the files runner/qemu writes into the run directory.
var qemuArtifacts = map[string]string{
	"console": "console.log", "agent": "agent.log", "dockerd": "dockerd.log",
	"qemu-stderr": "qemu-stderr.log", "qemu-cmdline": "qemu-cmdline.txt",
	"console-kvm-attempt": "console-kvm-attempt.log", "prepare": "prepare.log",
}

func (m *qemuMachine) Artifacts() map[string]string {
	out := map[string]string{}
	for name, file := range qemuArtifacts {
		if _, err := os.Stat(filepath.Join(m.dir, file)); err == nil {
			out[name] = file
		}
	}
	return out
}

func (m *qemuMachine) Info() Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Info{KernelRelease: m.ready.KernelRelease, DockerServer: m.ready.DockerVersion}
}

func (m *qemuMachine) Close() error {
	err := m.vm.Close()
	m.cancel()
	return err
}

// ConsoleLogWriter is implemented by providers that write console.log into
// the run directory themselves; the runner then only analyses the stream.
type ConsoleLogWriter interface {
	WritesConsoleLog() bool
}
