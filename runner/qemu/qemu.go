// Package qemu is matrixctl's default VM provider: it boots a cell's Debian
// kernel directly (-kernel/-initrd) with an initramfs holding the guest agent
// (runner/agent) as /init, the cell's rootfs image as a throwaway snapshot, the
// kernel's module disk read-only and a fresh scratch disk, and drives the guest
// over the agent channel (runner/agentproto) on the second serial port.
//
// Lifecycle: Start launches QEMU and returns a *VM; WaitDockerReady blocks
// until the guest's dockerd answers through a QEMU hostfwd port on 127.0.0.1
// (typed errors: *runner.UnsupportedError, *BootError, *InfraError).
// Shutdown asks the agent to power off (bounded, then SIGKILL); Kill is a
// power cut; Freeze stops QEMU. Wait reports how QEMU ended
// (Exit.Reason). Close is idempotent and releases everything: the QEMU
// process group (killed and reaped), the agent and QMP sockets, the scratch
// image (unless KeepScratch) and with QEMU the forwarded port. The serial console is written to
// <Dir>/console.log from its first byte and streamed to Config.Console while
// the VM runs; it is drained before QEMU is reaped.
//
// Fault injection: InjectIOErrors makes the scratch drive fail the guest's
// reads and writes with EIO from then on, through QEMU's QMP socket
// (ioerrors.go); ClearIOErrors undoes it.
//
// Acceleration: AccelAuto tries KVM when /dev/kvm opens read-write, but a KVM
// guest that does not say hello within KVMHelloTimeout is killed and the cell
// is booted again under TCG (VM.Accel, Ready.FellBack and the agent log record
// it): on the machines this project is developed on, KVM guests hang in early
// boot (nested virtualisation).
//
// Files in Config.Dir: console.log, agent.log, dockerd.log, qemu-stderr.log,
// qemu-cmdline.txt (the exact argv, shell-quoted), scratch.img, and
// console-kvm-attempt.log when AccelAuto fell back to TCG.
package qemu

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/selfbuild"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// Accel selects QEMU's accelerator.
type Accel string

// Accelerators.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// Config describes one VM. Zero values get the documented defaults.
type Config struct {
	QEMU     string // default qemu-system-x86_64
	Accel    Accel  // default auto
	CPUModel string // -cpu; default qemu64 (host/max abort under KVM on the development machines)
	CPUs     int    // default 2
	MemoryMB int    // default 2048

	Kernel *images.Kernel // required
	Rootfs *images.Rootfs // required
	// Agent is the guest agent binary; default selfbuild.Path(selfbuild.Agent).
	Agent string
	// CacheDir holds the initramfs cache (and a built agent); default Dir.
	CacheDir string

	Driver        string // Docker storage driver; default overlay2
	ScratchFS     string // scratch filesystem; default the driver's
	ScratchSizeMB int    // sparse scratch disk size; default 10240
	// ScratchBlkdebug is a QEMU blkdebug rules file applied to the scratch
	// drive from QEMU's start: its rules see mkfs and boot too. To make the
	// guest's I/O fail once it runs, use VM.InjectIOErrors.
	ScratchBlkdebug string
	// KeepScratch keeps scratch.img after Close (for fsck and verification).
	KeepScratch bool
	// ReuseScratch boots on the scratch.img already in Dir (kept by an
	// earlier VM, e.g. one whose power was cut): the guest mounts its
	// filesystem instead of making a new one.
	ReuseScratch bool

	// Dir is the cell's artifact directory (created if needed). Required.
	Dir string
	// Console receives a live copy of the serial console. It must not block
	// for long: the guest's serial output waits for it.
	Console io.Writer
	// Logf receives the provider's own notes (fallbacks, retries); default discards.
	Logf func(format string, args ...any)

	// Watchdog: once the agent said hello, no console output and no agent
	// message for this long → QEMU is killed and the VM ends with
	// ExitWatchdog. Default 120s; negative disables.
	Watchdog time.Duration
	// BootTimeout bounds launch-to-agent-hello; past it QEMU is killed
	// (ExitBootTimeout). Default 120s.
	BootTimeout time.Duration
	// DockerTimeout bounds launch-to-docker-ready; default 600s.
	DockerTimeout time.Duration
	// KVMHelloTimeout bounds the KVM attempt of AccelAuto; default 20s.
	KVMHelloTimeout time.Duration
	// ShutdownTimeout bounds Shutdown before it kills; default 30s.
	ShutdownTimeout time.Duration
	// ExtraAppend adds kernel command-line parameters.
	ExtraAppend []string
	// DockerdDebug runs dockerd with --debug (init: agent only: under
	// systemd docker.service runs as the distro configured it).
	DockerdDebug bool
	// Init is agentproto.InitSystemd (the default, DefaultInit) or InitAgent; Cgroup is
	// agentproto.CgroupDistro (default), CgroupV1 or CgroupV2.
	Init, Cgroup string
}

func (c *Config) defaults() error {
	if c.Kernel == nil || c.Rootfs == nil {
		return errors.New("qemu config: kernel and rootfs are required")
	}
	if c.Dir == "" {
		return errors.New("qemu config: dir is required")
	}
	for _, f := range []struct{ what, path string }{
		{"kernel image", c.Kernel.Vmlinuz}, {"module dir", c.Kernel.ModulesDir},
		{"module image", c.Kernel.ModulesImage}, {"rootfs image", c.Rootfs.Image},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("qemu config: %s: %w", f.what, err)
		}
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.QEMU == "" {
		c.QEMU = "qemu-system-x86_64"
	}
	if c.Accel == "" {
		c.Accel = AccelAuto
	}
	switch c.Accel {
	case AccelAuto, AccelRecheck, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("qemu config: accel %q: want auto, recheck, kvm or tcg", c.Accel)
	}
	if c.CPUModel == "" {
		c.CPUModel = "qemu64"
	}
	if c.CPUs <= 0 {
		c.CPUs = 2
	}
	if c.MemoryMB <= 0 {
		c.MemoryMB = 2048
	}
	if c.Driver == "" {
		c.Driver = "overlay2"
	}
	if c.ScratchSizeMB <= 0 {
		c.ScratchSizeMB = 10240
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	set(&c.Watchdog, 120*time.Second)
	set(&c.BootTimeout, 120*time.Second)
	set(&c.DockerTimeout, 600*time.Second)
	set(&c.KVMHelloTimeout, 20*time.Second)
	set(&c.ShutdownTimeout, 30*time.Second)
	if c.CacheDir == "" {
		c.CacheDir = c.Dir
	}
	return nil
}

// ExitReason says how QEMU ended.
type ExitReason string

// Exit reasons.
const (
	// ExitSelf: QEMU exited without being asked — with panic=-1 and
	// -no-reboot that is a kernel panic, a reboot or a power-off by the guest.
	ExitSelf ExitReason = "exited-by-itself"
	// ExitShutdown: the guest powered off after Shutdown asked it to.
	ExitShutdown ExitReason = "shutdown"
	// ExitKilled: Kill, Close, or a Shutdown that ran out of time.
	ExitKilled ExitReason = "killed"
	// ExitCanceled: the context given to Start ended.
	ExitCanceled ExitReason = "canceled"
	// ExitWatchdog: no console output and no agent message for Config.Watchdog.
	ExitWatchdog ExitReason = "watchdog-hang"
	// ExitBootTimeout: the agent did not say hello within Config.BootTimeout.
	ExitBootTimeout ExitReason = "boot-timeout"
	// ExitKVMFallback: the KVM attempt of AccelAuto made no progress (internal).
	ExitKVMFallback ExitReason = "kvm-no-progress"
	// ExitHostIOError: QEMU paused the guest on a host I/O error writing a
	// disk image (the host filesystem is full); see hostio.go.
	ExitHostIOError ExitReason = "host-io-error"
)

// Exit is how QEMU ended.
type Exit struct {
	Reason ExitReason
	// Status is the process status, e.g. "exit status 0" or "signal: killed".
	Status string
	// Uptime is the time from launch to exit.
	Uptime time.Duration
	// Silence is how long console and agent had been quiet when it ended:
	// when the harness killed it (for the watchdog, the silence it judged),
	// or when it exited by itself.
	Silence time.Duration
	// Detail says more about Reason when the harness knows more (ExitHostIOError).
	Detail string
}

func (e Exit) String() string {
	s := fmt.Sprintf("%s, %s after %s", e.Reason, e.Status, e.Uptime.Round(time.Millisecond))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Ready is a guest whose dockerd answers.
type Ready struct {
	// DockerHost is the Docker API on the host, e.g. tcp://127.0.0.1:40123.
	DockerHost    string
	KernelRelease string
	DockerVersion string
	// Init and Cmdline are what the guest reported (init: systemd), e.g.
	// "systemd 252 (252.39-1~deb12u1)" and its /proc/cmdline.
	Init, Cmdline string
	Accel         Accel
	// FellBack is true when AccelAuto's KVM attempt failed and TCG runs the cell.
	FellBack bool
	// BootToAgent and BootToDocker are measured from QEMU's launch.
	BootToAgent  time.Duration
	BootToDocker time.Duration
}

// VM is one running QEMU.
type VM struct {
	cfg            Config
	accel          Accel
	fellBack       bool
	fallbackReason string
	port           int
	launched       time.Time
	scratch        string
	sockDir        string
	argv           []string

	proc        *proc.Process
	ln          net.Listener
	connMu      sync.Mutex
	conn        net.Conn
	connected   chan struct{}
	consoleDone chan struct{}

	files []*os.File
	logMu sync.Mutex
	// artifactMu guards artifactErr, the first failed artifact write.
	artifactMu  sync.Mutex
	artifactErr error
	agentW      *os.File
	dockerW     *os.File
	journalW    *os.File // init: systemd only
	tail        *ring

	progress atomic.Int64 // unix nanos of the last console byte or agent message

	mu            sync.Mutex
	state         agentproto.State
	release       string
	dockerVersion string
	guestInit     string   // docker-ready: the guest's init, e.g. "systemd 252 (...)"
	guestCmdline  string   // docker-ready: the guest's /proc/cmdline
	dockerExits   []string // docker-exit: every exit of dockerd after docker-ready, as the guest reported it
	helloAt       time.Time
	readyAt       time.Time
	final         error
	reason        ExitReason
	reasonDetail  string
	quietAtKill   time.Duration // the silence when reason was set
	shutdownAsked bool
	nextID        uint64
	replies       map[uint64]chan agentproto.Message
	ioErrors      *IOErrors  // armed by InjectIOErrors
	qmpMu         sync.Mutex // one QMP session at a time
	changed       chan struct{}
	hello         chan struct{}
	exit          Exit

	exited    chan struct{}
	closeOnce sync.Once
}

// Start launches a VM for cfg. ctx bounds the VM's whole life: when it ends,
// QEMU is killed (ExitCanceled). Start returns once QEMU runs and its agent
// channel is connected (under AccelAuto with KVM, once the KVM guest said hello
// or was replaced by a TCG one).
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, infraf("create cell dir", err, "")
	}
	qemuPath, err := proc.LookPath(cfg.QEMU)
	if err != nil {
		return nil, infraf("find qemu", err, "")
	}
	if cfg.Agent == "" {
		p, err := selfbuild.Path(ctx, selfbuild.Agent, filepath.Join(cfg.CacheDir, "bin"))
		if err != nil {
			return nil, infraf("find guest agent", err, "")
		}
		cfg.Agent = p
	}
	initrd, lease, err := leasedInitramfs(cfg)
	if err != nil {
		return nil, infraf("build initramfs", err, "")
	}
	// QEMU reads the initramfs while it starts (a KVM→TCG fallback starts
	// a second QEMU inside Start): `cache prune` skips it until then.
	defer lease.Release()
	switch cfg.Accel {
	case AccelTCG:
		return launch(ctx, cfg, initrd, AccelTCG, "console.log", cfg.Console)
	case AccelKVM:
		if err := kvmUsable(); err != nil {
			return nil, infraf("accel kvm", err, "")
		}
		return launch(ctx, cfg, initrd, AccelKVM, "console.log", cfg.Console)
	}
	kvmErr := kvmUsable()
	if kvmErr != nil {
		cfg.Logf("accel auto: /dev/kvm not usable (%v): using tcg", kvmErr)
		return launch(ctx, cfg, initrd, AccelTCG, "console.log", cfg.Console)
	}
	// The host's remembered decision (accel.go): follow it, or make it.
	decider, dec, derr := lockAccel(ctx, cfg.CacheDir, qemuPath, cfg.Accel == AccelRecheck)
	if derr != nil {
		if ctx.Err() != nil {
			return nil, infraf("accel auto", ctx.Err(), "")
		}
		cfg.Logf("accel auto: host decision unavailable (%v): trying kvm", derr)
	}
	defer decider.release()
	if dec != nil && dec.Accel == AccelTCG {
		decider.release()
		vm, err := launch(ctx, cfg, initrd, AccelTCG, "console.log", cfg.Console)
		if err == nil {
			vm.fellBack, vm.fallbackReason = true, "remembered host decision: "+dec.Evidence
			vm.agentLog("accel auto: tcg, as decided for this host (%s; evidence %s; `--accel recheck` tries kvm again)", dec, cmp.Or(dec.AttemptConsole, "-"))
		}
		return vm, err
	}
	remember := func(accel Accel, evidence, console string) {
		if decider == nil || (dec != nil && dec.Accel == accel) {
			return
		}
		if d, err := decider.record(accel, evidence, console); err != nil {
			cfg.Logf("accel auto: could not remember the host decision: %v", err)
		} else {
			cfg.Logf("accel auto: remembered for this host: %s", d)
		}
	}
	gate := &gateWriter{}
	attemptLog := filepath.Join(cfg.Dir, "console-kvm-attempt.log")
	vm, err := launch(ctx, cfg, initrd, AccelKVM, "console-kvm-attempt.log", gate)
	if err == nil {
		why := vm.awaitHello(ctx, cfg.KVMHelloTimeout)
		if why == "" {
			// The KVM guest works: its console file becomes console.log and
			// what it printed so far goes to the live console.
			os.Rename(attemptLog, filepath.Join(cfg.Dir, "console.log"))
			gate.open(cfg.Console)
			took := time.Since(vm.launched).Round(time.Millisecond)
			vm.Logf("accel auto: kvm guest reached the agent in %s", took)
			remember(AccelKVM, fmt.Sprintf("kvm guest reached the agent in %s", took), "")
			return vm, nil
		}
		vm.killWith(ExitKVMFallback)
		vm.Close()
		cfg.Logf("accel auto: kvm guest %s: falling back to tcg", why)
		err = errors.New(why)
		if ctx.Err() == nil {
			remember(AccelTCG, "kvm guest "+why, attemptLog)
		}
	} else {
		cfg.Logf("accel auto: kvm launch failed (%v): falling back to tcg", err)
		if ctx.Err() == nil {
			remember(AccelTCG, "kvm launch failed: "+err.Error(), filepath.Join(cfg.Dir, "qemu-stderr.log"))
		}
	}
	decider.release()
	tcg, terr := launch(ctx, cfg, initrd, AccelTCG, "console.log", cfg.Console)
	if terr != nil {
		return nil, terr
	}
	tcg.fellBack, tcg.fallbackReason = true, err.Error()
	tcg.agentLog("accel auto: kvm attempt failed (%s); this VM runs under tcg", err)
	return tcg, nil
}

// awaitHello waits for the agent's hello; it returns "" on success or why not.
func (v *VM) awaitHello(ctx context.Context, d time.Duration) string {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.hello:
		return ""
	case <-v.exited:
		return "exited before the agent said hello (" + v.exit.String() + ")"
	case <-t.C:
		return fmt.Sprintf("made no agent progress within %s", d)
	case <-ctx.Done():
		return "canceled: " + ctx.Err().Error()
	}
}

// Logf writes a provider note to the configured logger and agent.log.
func (v *VM) Logf(format string, args ...any) {
	v.cfg.Logf(format, args...)
	v.agentLog(format, args...)
}

func (v *VM) agentLog(format string, args ...any) {
	v.logMu.Lock()
	defer v.logMu.Unlock()
	if v.agentW != nil {
		_, err := fmt.Fprintf(v.agentW, "[host %s] %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
		v.noteWrite(v.agentW, err)
	}
}

// noteWrite keeps the first failed write of an artifact file (a full
// results disk) for ArtifactErr.
func (v *VM) noteWrite(f *os.File, err error) {
	if err == nil {
		return
	}
	v.artifactMu.Lock()
	defer v.artifactMu.Unlock()
	if v.artifactErr == nil {
		v.artifactErr = fmt.Errorf("%s: %w", filepath.Base(f.Name()), err)
	}
}

// ArtifactErr is the first write of console.log, agent.log or dockerd.log
// that failed: the run's evidence is incomplete.
func (v *VM) ArtifactErr() error {
	v.artifactMu.Lock()
	defer v.artifactMu.Unlock()
	return v.artifactErr
}

func kvmUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

const maxPortAttempts = 4

// launch starts QEMU, retrying with another port when hostfwd cannot bind.
func launch(ctx context.Context, cfg Config, initrd string, accel Accel, consoleName string, console io.Writer) (*VM, error) {
	var lastErr error
	for attempt := 0; attempt < maxPortAttempts; attempt++ {
		vm, err := launchOnce(ctx, cfg, initrd, accel, consoleName, console)
		if err == nil {
			return vm, nil
		}
		lastErr = err
		var ie *InfraError
		if !errors.As(err, &ie) || !strings.Contains(ie.Output, "host forwarding") {
			return nil, err
		}
		cfg.Logf("qemu: forwarded port taken, retrying with another: %v", err)
	}
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// bootConfig is what the agent is told on the kernel command line.
func (c Config) bootConfig() agentproto.BootConfig {
	return agentproto.BootConfig{Driver: c.Driver, ScratchFS: c.ScratchFS, Channel: "/dev/ttyS1", DockerdDebug: c.DockerdDebug, ReuseScratch: c.ReuseScratch,
		DockerdTimeoutS: int(c.DockerTimeout / time.Second), Init: c.Init, Cgroup: c.Cgroup}
}

// HarnessChanges lists how the guest of c differs from a standard install.
func (c Config) HarnessChanges() []agentproto.HarnessChange {
	return agentproto.HarnessChanges(c.bootConfig())
}

func (v *VM) args(initrd string) ([]string, error) {
	c := v.cfg
	boot := c.bootConfig()
	params, err := boot.Params()
	if err != nil {
		return nil, err
	}
	appendLine := append([]string{"console=ttyS0,115200", "panic=-1", "8250.nr_uarts=2", "edd=off"}, c.ExtraAppend...)
	appendLine = append(appendLine, boot.InitParams()...)
	appendLine = append(appendLine, params...)
	return append([]string{
		"-name", "guest=matrixctl-" + qemuEscape(filepath.Base(c.Dir)),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-machine", "pc", "-accel", string(v.accel), "-cpu", c.CPUModel,
		"-smp", strconv.Itoa(c.CPUs), "-m", strconv.Itoa(c.MemoryMB),
		"-kernel", c.Kernel.Vmlinuz, "-initrd", initrd, "-append", strings.Join(appendLine, " "),
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-chardev", "socket,id=agent,path=" + qemuEscape(filepath.Join(v.sockDir, "agent.sock")), "-serial", "chardev:agent",
		"-monitor", "none",
		"-qmp", "unix:" + qemuEscape(filepath.Join(v.sockDir, qmpSocket)) + ",server=on,wait=off",
		"-drive", "file=" + qemuEscape(c.Rootfs.Image) + ",if=none,id=root,format=raw,snapshot=on",
		"-device", "virtio-blk-pci,drive=root,serial=" + agentproto.SerialRoot,
		"-drive", "file=" + qemuEscape(c.Kernel.ModulesImage) + ",if=none,id=modules,format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=modules,serial=" + agentproto.SerialModules,
		"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:2375", v.port),
		"-device", "virtio-net-pci,netdev=net0,romfile=",
	}, v.scratchArgs()...), nil
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func launchOnce(ctx context.Context, cfg Config, initrd string, accel Accel, consoleName string, console io.Writer) (_ *VM, retErr error) {
	v := &VM{
		cfg: cfg, accel: accel, replies: map[uint64]chan agentproto.Message{},
		connected: make(chan struct{}), consoleDone: make(chan struct{}), changed: make(chan struct{}),
		hello: make(chan struct{}), exited: make(chan struct{}), tail: newRing(16 << 10),
	}
	var cleanups []func()
	defer func() {
		if retErr != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()
	var err error
	if v.sockDir, err = os.MkdirTemp("", "mxq-"); err != nil {
		return nil, infraf("agent socket dir", err, "")
	}
	cleanups = append(cleanups, func() { os.RemoveAll(v.sockDir) })
	if v.ln, err = net.Listen("unix", filepath.Join(v.sockDir, "agent.sock")); err != nil {
		return nil, infraf("agent socket", err, "")
	}
	cleanups = append(cleanups, func() { v.ln.Close() })
	v.scratch = filepath.Join(cfg.Dir, "scratch.img")
	if cfg.ReuseScratch {
		if _, err := os.Stat(v.scratch); err != nil {
			return nil, infraf("reuse scratch disk", err, "")
		}
	} else {
		os.Remove(v.scratch)
		if err := createSparse(v.scratch, int64(cfg.ScratchSizeMB)<<20); err != nil {
			return nil, infraf("scratch disk", err, "")
		}
		cleanups = append(cleanups, func() { os.Remove(v.scratch) })
	}
	if v.port, err = freePort(); err != nil {
		return nil, infraf("pick forwarded port", err, "")
	}
	args, err := v.args(initrd)
	if err != nil {
		return nil, err
	}
	v.argv = append([]string{cfg.QEMU}, args...)
	if err := os.WriteFile(filepath.Join(cfg.Dir, "qemu-cmdline.txt"), []byte(proc.Quote(v.argv)+"\n"), 0o644); err != nil {
		return nil, infraf("write qemu-cmdline.txt", err, "")
	}
	open := func(name string) (*os.File, error) {
		f, err := os.Create(filepath.Join(cfg.Dir, name))
		if err != nil {
			return nil, err
		}
		v.files = append(v.files, f)
		return f, nil
	}
	cleanups = append(cleanups, func() {
		for _, f := range v.files {
			f.Close()
		}
	})
	consoleF, err := open(consoleName)
	if err != nil {
		return nil, infraf("console log", err, "")
	}
	if v.agentW, err = open("agent.log"); err != nil {
		return nil, infraf("agent log", err, "")
	}
	if v.dockerW, err = open("dockerd.log"); err != nil {
		return nil, infraf("dockerd log", err, "")
	}
	if c := cfg.bootConfig(); c.InitMode() == agentproto.InitSystemd {
		if v.journalW, err = open("journal.log"); err != nil {
			return nil, infraf("journal log", err, "")
		}
	}
	stderrF, err := open("qemu-stderr.log")
	if err != nil {
		return nil, infraf("qemu stderr log", err, "")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, infraf("console pipe", err, "")
	}
	v.launched = time.Now()
	v.progress.Store(v.launched.UnixNano())
	// Not ctx: watch kills QEMU when ctx ends, so that the exit has its reason.
	p, err := proc.Start(context.Background(), proc.Cmd{Argv: v.argv, Stdout: pw, Stderr: stderrF})
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, &InfraError{Op: "start qemu", Argv: v.argv, Err: proc.Cause(err)}
	}
	pw.Close()
	v.proc = p
	go v.readConsole(pr, consoleF, console)
	go v.waitExit()
	go v.accept()
	go v.watch(ctx)
	// From here on, Close releases everything.
	cleanups = []func(){func() { v.Close() }}

	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-v.connected:
		return v, nil
	case <-v.exited:
		out, _ := os.ReadFile(stderrF.Name())
		return nil, &InfraError{Op: "start qemu", Argv: v.argv, Output: string(out), Err: fmt.Errorf("qemu %s", v.exit.Status)}
	case <-t.C:
		out, _ := os.ReadFile(stderrF.Name())
		return nil, &InfraError{Op: "start qemu", Argv: v.argv, Output: string(out), Err: errors.New("agent channel not connected within 30s")}
	case <-ctx.Done():
		return nil, &InfraError{Op: "start qemu", Argv: v.argv, Err: ctx.Err()}
	}
}

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (v *VM) touch() { v.progress.Store(time.Now().UnixNano()) }

// quiet is how long console and agent have been silent at now.
func (v *VM) quiet(now time.Time) time.Duration { return now.Sub(time.Unix(0, v.progress.Load())) }

func (v *VM) notify() {
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *VM) readConsole(r *os.File, file *os.File, live io.Writer) {
	defer close(v.consoleDone)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			v.touch()
			_, werr := file.Write(buf[:n])
			v.noteWrite(file, werr)
			v.tail.Write(buf[:n])
			if live != nil {
				live.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// waitExit drains the console, then reaps QEMU.
func (v *VM) waitExit() {
	<-v.consoleDone
	status := "exit status 0"
	if err := v.proc.Wait(); err != nil {
		status = proc.Cause(err).Error()
	}
	v.mu.Lock()
	reason := v.reason
	if reason == "" {
		reason = ExitSelf
		if v.shutdownAsked {
			reason = ExitShutdown
		}
	}
	now := time.Now()
	silence := v.quiet(now)
	if v.reason != "" {
		// Killed: the silence that decided it. What QEMU's end flushes
		// (a partial agent line read at EOF) is not the guest's progress.
		silence = v.quietAtKill
	}
	v.exit = Exit{Reason: reason, Status: status, Uptime: now.Sub(v.launched),
		Silence: silence, Detail: v.reasonDetail}
	close(v.exited)
	v.notify()
	v.mu.Unlock()
}

func (v *VM) killWith(reason ExitReason) { v.killWithDetail(reason, "") }

// killWithDetail kills QEMU; the first reason given is the exit's reason.
func (v *VM) killWithDetail(reason ExitReason, detail string) {
	v.mu.Lock()
	if v.reason == "" {
		v.reason, v.reasonDetail = reason, detail
		v.quietAtKill = v.quiet(time.Now())
	}
	v.mu.Unlock()
	select {
	case <-v.exited:
		return
	default:
	}
	v.proc.Kill()
}

func (v *VM) watch(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-v.exited:
			return
		case <-ctx.Done():
			v.killWith(ExitCanceled)
			return
		case <-tick.C:
			select {
			case <-v.hello:
			default:
				// Before the agent's hello (firmware, kernel decompression and
				// early boot print nothing for seconds under TCG) only BootTimeout applies.
				if time.Since(v.launched) > v.cfg.BootTimeout {
					v.Logf("boot timeout: the agent did not say hello within %s: killing qemu", v.cfg.BootTimeout)
					v.killWith(ExitBootTimeout)
					return
				}
				continue
			}
			if v.cfg.Watchdog > 0 && v.quiet(time.Now()) > v.cfg.Watchdog {
				if why := v.pausedOnHostIOError(); why != "" {
					v.Logf("watchdog: %s: killing qemu", why)
					v.killWithDetail(ExitHostIOError, why)
					return
				}
				v.Logf("watchdog: no console output and no agent message for %s: killing qemu", v.cfg.Watchdog)
				v.killWith(ExitWatchdog)
				return
			}
		}
	}
}

func (v *VM) accept() {
	c, err := v.ln.Accept()
	if err != nil {
		return
	}
	v.connMu.Lock()
	v.conn = c
	v.connMu.Unlock()
	close(v.connected)
	v.readAgent(c)
}

func (v *VM) readAgent(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := readLine(r, agentproto.MaxLine)
		if len(line) > 0 {
			v.touch()
			if m, derr := agentproto.DecodeMessage(line); derr == nil {
				v.handle(m)
			}
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line; the part of a line beyond max is dropped (and the line with it).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if tooLong {
			return []byte{' '}, err
		}
		return line, err
	}
}

func (v *VM) handle(m agentproto.Message) {
	now := time.Now()
	switch m.Type {
	case agentproto.TypeLog:
		v.logMu.Lock()
		w := v.agentW
		switch m.Source {
		case agentproto.SourceDockerd:
			w = v.dockerW
		case agentproto.SourceJournal:
			w = v.journalW
		}
		if w != nil {
			_, err := fmt.Fprintf(w, "[%9.3f] %s\n", float64(m.UptimeMS)/1000, strings.TrimRight(m.Line, "\r\n"))
			v.noteWrite(w, err)
		}
		v.logMu.Unlock()
	case agentproto.TypeState, agentproto.TypeHello, agentproto.TypeShutdown, agentproto.TypeDockerExit:
		v.agentLog("agent %s %s %s%s", m.Type, m.State, m.Reason, m.Release)
	}
	v.mu.Lock()
	switch m.Type {
	case agentproto.TypeHello:
		if v.helloAt.IsZero() {
			v.helloAt = now
			v.release = m.Release
			close(v.hello)
		}
	case agentproto.TypeState:
		v.state = m.State
		switch m.State {
		case agentproto.StateDockerReady:
			v.dockerVersion, v.readyAt = m.DockerVersion, now
			v.guestInit, v.guestCmdline = m.Init, m.Cmdline
		case agentproto.StateUnsupported:
			v.final = &runner.UnsupportedError{Reason: m.Reason}
		case agentproto.StateError:
			v.final = &BootError{Stage: string(m.State), Reason: "agent: " + m.Reason}
		}
	case agentproto.TypeDockerExit:
		v.dockerExits = append(v.dockerExits, fmt.Sprintf("at %.1fs of guest uptime: %s", float64(m.UptimeMS)/1000, m.Reason))
	case agentproto.TypeReply:
		if c, ok := v.replies[m.ID]; ok {
			delete(v.replies, m.ID)
			c <- m
		}
	}
	v.notify()
	v.mu.Unlock()
}

// Accel is the accelerator QEMU runs with; FellBack reports an AccelAuto fallback to TCG.
func (v *VM) Accel() (accel Accel, fellBack bool, reason string) {
	return v.accel, v.fellBack, v.fallbackReason
}

// ScratchImage is the path of the scratch disk image.
func (v *VM) ScratchImage() string { return v.scratch }

// Port is the host port forwarded to the guest's Docker API.
func (v *VM) Port() int { return v.port }

// PID is QEMU's process id (also its process group id).
func (v *VM) PID() int { return v.proc.PID() }

// ConsoleTail returns the last bytes of the serial console.
func (v *VM) ConsoleTail() string { return v.tail.String() }

// WaitHello blocks until the agent said hello and returns the time from launch.
func (v *VM) WaitHello(ctx context.Context) (time.Duration, error) {
	select {
	case <-v.hello:
		return v.helloAt.Sub(v.launched), nil
	case <-v.exited:
		return 0, &BootError{Reason: "qemu exited before the agent said hello", Exit: &v.exit, ConsoleTail: v.tail.String()}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// WaitDockerReady blocks until the guest's dockerd answers through the forwarded port.
func (v *VM) WaitDockerReady(ctx context.Context) (Ready, error) {
	for {
		v.mu.Lock()
		ready, final, state, helloAt, changed := v.readyAt, v.final, v.state, v.helloAt, v.changed
		v.mu.Unlock()
		if final != nil {
			return Ready{}, final
		}
		select {
		case <-v.exited:
			return Ready{}, &BootError{Stage: string(state), Reason: "qemu exited before docker was ready", Exit: &v.exit, ConsoleTail: v.tail.String()}
		default:
		}
		if !ready.IsZero() {
			return v.ready(ctx)
		}
		since := time.Since(v.launched)
		if helloAt.IsZero() && since > v.cfg.BootTimeout {
			return Ready{}, &BootError{Reason: fmt.Sprintf("the agent did not say hello within %s", v.cfg.BootTimeout), ConsoleTail: v.tail.String()}
		}
		if since > v.cfg.DockerTimeout {
			return Ready{}, &BootError{Stage: string(state), Reason: fmt.Sprintf("docker not ready within %s", v.cfg.DockerTimeout), ConsoleTail: v.tail.String()}
		}
		select {
		case <-changed:
		case <-v.exited:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return Ready{}, ctx.Err()
		}
	}
}

func (v *VM) ready(ctx context.Context) (Ready, error) {
	r := Ready{
		DockerHost: fmt.Sprintf("tcp://127.0.0.1:%d", v.port), KernelRelease: v.release, DockerVersion: v.dockerVersion,
		Init: v.guestInit, Cmdline: v.guestCmdline, Accel: v.accel, FellBack: v.fellBack, BootToAgent: v.helloAt.Sub(v.launched), BootToDocker: v.readyAt.Sub(v.launched),
	}
	if err := pingDocker(ctx, r.DockerHost, 30*time.Second); err != nil {
		return Ready{}, &InfraError{Op: "reach docker through the forwarded port", Err: err}
	}
	return r, nil
}

// Command sends c to the agent and waits for its reply.
func (v *VM) Command(ctx context.Context, c agentproto.Command) error {
	select {
	case <-v.connected:
	case <-v.exited:
		return errors.New("agent command: vm has exited")
	}
	v.mu.Lock()
	v.nextID++
	c.V, c.ID = agentproto.Version, v.nextID
	reply := make(chan agentproto.Message, 1)
	v.replies[c.ID] = reply
	v.mu.Unlock()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("agent command: %w", err)
	}
	b, err := agentproto.Encode(c)
	if err != nil {
		return err
	}
	v.connMu.Lock()
	_, err = v.conn.Write(b)
	v.connMu.Unlock()
	if err != nil {
		return fmt.Errorf("agent command %s: %w", c.Op, err)
	}
	select {
	case m := <-reply:
		if m.Error != "" {
			return &AgentError{Op: c.Op, Reason: m.Error}
		}
		return nil
	case <-v.exited:
		return fmt.Errorf("agent command %s: vm exited before the reply (%s)", c.Op, v.exit)
	case <-ctx.Done():
		return fmt.Errorf("agent command %s: %w", c.Op, ctx.Err())
	}
}

// Shutdown asks the agent to power off and waits up to ShutdownTimeout (or
// ctx); then it kills QEMU. It returns how QEMU ended.
func (v *VM) Shutdown(ctx context.Context) Exit {
	v.mu.Lock()
	v.shutdownAsked = true
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, v.cfg.ShutdownTimeout)
	defer cancel()
	go v.Command(ctx, agentproto.Command{Op: agentproto.OpShutdown})
	select {
	case <-v.exited:
	case <-ctx.Done():
		v.Logf("shutdown: guest did not power off in time: killing qemu")
		v.killWith(ExitKilled)
		<-v.exited
	}
	return v.exit
}

// Kill cuts the power: SIGKILL to QEMU's process group.
func (v *VM) Kill() { v.killWith(ExitKilled) }

// Freeze stops QEMU (SIGSTOP): the guest goes silent, as a hung machine does.
func (v *VM) Freeze() error { return v.signal(syscall.SIGSTOP) }

func (v *VM) signal(sig syscall.Signal) error {
	select {
	case <-v.exited:
		return errors.New("vm has exited")
	default:
	}
	return v.proc.Signal(sig)
}

// Wait blocks until QEMU has exited and been reaped.
func (v *VM) Wait() Exit {
	<-v.exited
	return v.exit
}

// Exited is closed once QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Close kills QEMU if it still runs, reaps it and releases every resource. It is idempotent.
func (v *VM) Close() error {
	v.closeOnce.Do(func() {
		if v.proc != nil {
			v.killWith(ExitKilled)
			<-v.exited
		}
		if v.ln != nil {
			v.ln.Close()
		}
		v.connMu.Lock()
		if v.conn != nil {
			v.conn.Close()
		}
		v.connMu.Unlock()
		os.RemoveAll(v.sockDir)
		v.logMu.Lock()
		for _, f := range v.files {
			f.Close()
		}
		v.agentW, v.dockerW, v.journalW = nil, nil, nil
		v.logMu.Unlock()
		if !v.cfg.KeepScratch {
			os.Remove(v.scratch)
		}
	})
	return nil
}

// gateWriter holds what is written until open, then forwards to the target.
type gateWriter struct {
	mu     sync.Mutex
	opened bool
	target io.Writer
	held   []byte
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		if len(g.held) < 4<<20 {
			g.held = append(g.held, p...)
		}
		return len(p), nil
	}
	if g.target != nil {
		g.target.Write(p)
	}
	return len(p), nil
}

func (g *gateWriter) open(target io.Writer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opened, g.target = true, target
	if target != nil {
		target.Write(g.held)
	}
	g.held = nil
}

// ring keeps the last n bytes written.
type ring struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func newRing(n int) *ring { return &ring{n: n} }

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if len(r.buf) > r.n {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-r.n:]...)
	}
	return len(p), nil
}

func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}

// DockerExits lists every exit of dockerd's main process after docker-ready
// that the guest reported (agentproto.TypeDockerExit), oldest first.
func (v *VM) DockerExits() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.dockerExits)
}
