package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// Console markers the agent prints; both benchmarks time the same ones.
var (
	markAgent  = []byte("matrixctl-agent: starting")
	markDocker = []byte("matrixctl-agent: docker-ready")
)

// markerClock records when each marker first appears in a console stream.
type markerClock struct {
	mu    sync.Mutex
	start time.Time
	buf   bytes.Buffer
	seen  map[string]time.Duration
	ch    chan struct{}
}

func newMarkerClock(start time.Time) *markerClock {
	return &markerClock{start: start, seen: map[string]time.Duration{}, ch: make(chan struct{}, 1)}
}

func (m *markerClock) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf.Write(p)
	for _, mark := range [][]byte{markAgent, markDocker} {
		if _, ok := m.seen[string(mark)]; !ok && bytes.Contains(m.buf.Bytes(), mark) {
			m.seen[string(mark)] = time.Since(m.start)
			select {
			case m.ch <- struct{}{}:
			default:
			}
		}
	}
	return len(p), nil
}

func (m *markerClock) wait(ctx context.Context, mark []byte) (time.Duration, error) {
	for {
		m.mu.Lock()
		d, ok := m.seen[string(mark)]
		m.mu.Unlock()
		if ok {
			return d, nil
		}
		select {
		case <-m.ch:
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q: %w", mark, ctx.Err())
		}
	}
}

// BenchmarkBoot measures launch → agent start and launch → docker-ready
// through the provider and, beside it, for a hand-written qemu -kernel
// command line booting the same kernel, initramfs and rootfs, each under
// both inits: the agent as PID 1 and the distro's systemd starting its own
// docker.service. All are timed by the same console markers from just
// before launch, so the provider's overhead and the real init's cost read
// as ratios (s-to-docker of provider/systemd over provider/agent, and of
// provider over qemu-direct). Run with -benchtime=1x: each op is a full boot.
func BenchmarkBoot(b *testing.B) {
	f := integration(b, "6.1")
	for _, init := range []string{agentproto.InitAgent, agentproto.InitSystemd} {
		b.Run("provider/init-"+init, func(b *testing.B) { benchProviderBoot(b, f, init) })
		b.Run("qemu-direct/init-"+init, func(b *testing.B) { benchDirectBoot(b, f, init) })
	}
}

// benchProviderBoot boots through Start, as the runner does.
func benchProviderBoot(b *testing.B, f fixture, init string) {
	var agent, docker, apiDocker time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		cfg := f.config(b, dir)
		cfg.Init = init
		start := time.Now()
		clock := newMarkerClock(start)
		cfg.Console = clock
		vm, err := Start(ctx, cfg)
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		ready, err := vm.WaitDockerReady(ctx)
		apiReady := time.Since(start)
		if err != nil {
			vm.Close()
			cancel()
			b.Fatal(err)
		}
		a, err1 := clock.wait(ctx, markAgent)
		d, err2 := clock.wait(ctx, markDocker)
		vm.Close()
		cancel()
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		agent, docker, apiDocker = agent+a, docker+d, apiDocker+apiReady
		b.Logf("provider: agent %s, docker-ready marker %s, WaitDockerReady returned %s (guest's own: hello %s ready %s)",
			a, d, apiReady, ready.BootToAgent, ready.BootToDocker)
	}
	b.ReportMetric(agent.Seconds()/float64(b.N), "s-to-agent")
	b.ReportMetric(docker.Seconds()/float64(b.N), "s-to-docker")
	b.ReportMetric(apiDocker.Seconds()/float64(b.N), "s-to-api-ready")
}

// benchDirectBoot boots the same kernel, initramfs and rootfs from a
// hand-written qemu -kernel command line.
func benchDirectBoot(b *testing.B, f fixture, init string) {
	initrd, err := Initramfs(f.kernel, f.agent, f.cache)
	if err != nil {
		b.Fatal(err)
	}
	var agent, docker time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		scratch := filepath.Join(dir, "scratch.img")
		if err := createSparse(scratch, 10<<30); err != nil {
			b.Fatal(err)
		}
		port, err := freePort()
		if err != nil {
			b.Fatal(err)
		}
		bc := agentproto.BootConfig{Driver: "overlay2", Channel: "/dev/ttyS1", Init: init}
		boot, _ := bc.Params()
		boot = append(boot, bc.InitParams()...)
		argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-smp", "2", "-m", "2048",
			"-nographic", "-no-reboot",
			"-kernel", f.kernel.Vmlinuz, "-initrd", initrd,
			"-append", "console=ttyS0,115200 panic=-1 " + strings.Join(boot, " "),
			"-serial", "mon:stdio", "-serial", "null", // console; the agent channel: nobody listens
			"-drive", "file=" + f.rootfs.Image + ",if=none,id=d0,format=raw,snapshot=on",
			"-device", "virtio-blk-pci,drive=d0,serial=" + agentproto.SerialRoot,
			"-drive", "file=" + f.kernel.ModulesImage + ",if=none,id=d1,format=raw,readonly=on",
			"-device", "virtio-blk-pci,drive=d1,serial=" + agentproto.SerialModules,
			"-drive", "file=" + scratch + ",if=none,id=d2,format=raw",
			"-device", "virtio-blk-pci,drive=d2,serial=" + agentproto.SerialScratch,
			"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:2375", port),
		}
		b.Logf("hand-built: %s", proc.Quote(argv))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		start := time.Now()
		clock := newMarkerClock(start)
		var stderr bytes.Buffer
		p, err := proc.Start(ctx, proc.Cmd{Argv: argv, Stdout: clock, Stderr: &stderr})
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		go func() { <-p.Done(); cancel() }() // an early exit ends the wait
		a, err1 := clock.wait(ctx, markAgent)
		d, err2 := clock.wait(ctx, markDocker)
		p.Kill()
		<-p.Done()
		cancel()
		os.Remove(scratch)
		if err1 != nil || err2 != nil {
			b.Fatalf("%v %v\n%s", err1, err2, stderr.String())
		}
		agent, docker = agent+a, docker+d
		b.Logf("qemu-direct: agent %s, docker-ready marker %s", a, d)
	}
	b.ReportMetric(agent.Seconds()/float64(b.N), "s-to-agent")
	b.ReportMetric(docker.Seconds()/float64(b.N), "s-to-docker")
}
