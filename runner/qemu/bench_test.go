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
// for four boots of the same kernel, initramfs and rootfs in every op: through
// the provider (as the runner boots a cell) and from a hand-written qemu
// -kernel command line, each under both inits (the distro's systemd
// starting its own docker.service, and the agent as PID 1). All are timed by
// the same console markers from just before launch. Besides the absolute
// times it reports, from the same run, the ratios the README quotes:
// x-systemd/agent (the real init's cost, through the provider) and
// x-provider/direct (the provider's overhead, under systemd and under the
// agent). Run with -benchtime=1x: each op is four full boots.
func BenchmarkBoot(b *testing.B) {
	f := integration(b, "6.1")
	initrd, err := Initramfs(f.kernel, f.agent, f.cache)
	if err != nil {
		b.Fatal(err)
	}
	inits := []string{agentproto.InitSystemd, agentproto.InitAgent}
	docker := map[string]time.Duration{} // "provider/systemd" → sum over ops
	agent := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, init := range inits {
			a, d := providerBoot(b, f, init)
			agent["provider/"+init] += a
			docker["provider/"+init] += d
			a, d = directBoot(b, f, initrd, init)
			agent["direct/"+init] += a
			docker["direct/"+init] += d
		}
	}
	for k, d := range docker {
		b.ReportMetric(d.Seconds()/float64(b.N), "s-to-docker:"+k)
		b.ReportMetric(agent[k].Seconds()/float64(b.N), "s-to-agent:"+k)
	}
	ratio := func(x, y string) float64 { return docker[x].Seconds() / docker[y].Seconds() }
	b.ReportMetric(ratio("provider/systemd", "provider/agent"), "x-systemd/agent")
	b.ReportMetric(ratio("provider/systemd", "direct/systemd"), "x-provider/direct:systemd")
	b.ReportMetric(ratio("provider/agent", "direct/agent"), "x-provider/direct:agent")
	b.ReportMetric(ratio("direct/systemd", "direct/agent"), "x-systemd/agent:direct")
}

// providerBoot boots once through Start, as the runner does, and returns
// the times to the agent's start and docker-ready markers.
func providerBoot(b *testing.B, f fixture, init string) (agent, docker time.Duration) {
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := f.config(b, dir)
	cfg.Init = init
	start := time.Now()
	clock := newMarkerClock(start)
	cfg.Console = clock
	vm, err := Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	ready, err := vm.WaitDockerReady(ctx)
	apiReady := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	a, err1 := clock.wait(ctx, markAgent)
	d, err2 := clock.wait(ctx, markDocker)
	if err1 != nil || err2 != nil {
		b.Fatal(err1, err2)
	}
	b.Logf("provider, init %s: agent %s, docker-ready marker %s, WaitDockerReady returned %s (guest's own: hello %s ready %s)",
		init, a, d, apiReady, ready.BootToAgent, ready.BootToDocker)
	return a, d
}

// directBoot boots the same kernel, initramfs and rootfs once from a
// hand-written qemu -kernel command line and returns the times to the same
// markers.
func directBoot(b *testing.B, f fixture, initrd, init string) (agent, docker time.Duration) {
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
	b.Logf("qemu-direct, init %s: agent %s, docker-ready marker %s", init, a, d)
	return a, d
}
