package qemu

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/selfbuild"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// fixture is a kernel, the debian12 rootfs with docker 20.10.24 and the agent.
type fixture struct {
	kernel *images.Kernel
	rootfs *images.Rootfs
	agent  string
	cache  string
}

var kernelRefs = map[string]matrix.KernelRef{
	"6.1":  {Version: "6.1", Suite: "bookworm"},
	"5.10": {Version: "5.10", Suite: "bullseye"},
}

func integration(t testing.TB, kernel string) fixture {
	t.Helper()
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "apt-get", "depmod", "mkfs.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := images.New(testutil.CacheDir(), images.WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Kernel(ctx, kernelRefs[kernel])
	if err != nil {
		t.Fatalf("kernel %s: %v", kernel, err)
	}
	r, err := c.Rootfs(ctx, matrix.DistroRef{Name: "debian12", Suite: "bookworm"}, matrix.DockerRef{Version: "20.10.24"}, nil)
	if err != nil {
		t.Fatalf("rootfs: %v", err)
	}
	agent, err := selfbuild.Path(ctx, selfbuild.Agent, filepath.Join(testutil.CacheDir(), "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{kernel: k, rootfs: r, agent: agent, cache: testutil.CacheDir()}
}

func (f fixture) config(t testing.TB, dir string) Config {
	return Config{
		Kernel: f.kernel, Rootfs: f.rootfs, Agent: f.agent, CacheDir: f.cache, Dir: dir,
		Accel: AccelTCG, CPUs: 2, MemoryMB: 2048, Logf: t.Logf,
	}
}

// assertReleased checks that nothing of vm survives its Close.
func assertReleased(t *testing.T, vm *VM, dir string) {
	t.Helper()
	testutil.NoProcessesLeft(t, dir)
	if _, err := os.Stat(vm.ScratchImage()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("scratch image %s still exists (%v)", vm.ScratchImage(), err)
	}
	if _, err := os.Stat(vm.sockDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("agent socket dir %s still exists", vm.sockDir)
	}
	if listening(vm.Port()) {
		t.Errorf("forwarded port %d still listening", vm.Port())
	}
}

// listening reports whether a TCP socket listens on 127.0.0.1:port.
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// imageTar is a one-layer filesystem tarball holding the agent binary as /hello.
func imageTar(t *testing.T, agent string) io.Reader {
	b, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	return &buf
}

// TestIntegrationBootDocker boots two real kernels with the debian12 rootfs,
// reads dockerd's version and storage driver through the forwarded port and
// runs one container from an image imported through the API.
func TestIntegrationBootDocker(t *testing.T) {
	for _, kernel := range []string{"6.1", "5.10"} {
		t.Run(kernel, func(t *testing.T) {
			f := integration(t, kernel)
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			vm, err := Start(ctx, f.config(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				vm.Close()
				assertReleased(t, vm, dir)
			}()
			ready, err := vm.WaitDockerReady(ctx)
			if err != nil {
				t.Fatalf("%v\nconsole tail:\n%s", err, vm.ConsoleTail())
			}
			t.Logf("ready: %+v", ready)
			if !strings.HasPrefix(ready.KernelRelease, kernel+".") {
				t.Errorf("kernel release %s, want %s.x", ready.KernelRelease, kernel)
			}
			cli, err := DockerClient(ready)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			sv, err := cli.ServerVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			info, err := cli.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("server %s (API %s), kernel %s, storage driver %s", sv.Version, sv.APIVersion, sv.KernelVersion, info.Driver)
			if !strings.HasPrefix(sv.Version, "20.10.24") || info.Driver != "overlay2" || sv.KernelVersion != ready.KernelRelease {
				t.Errorf("server %s driver %s kernel %s; want 20.10.24, overlay2, %s", sv.Version, info.Driver, sv.KernelVersion, ready.KernelRelease)
			}
			rc, err := cli.ImageImport(ctx, image.ImportSource{Source: imageTar(t, f.agent), SourceName: "-"}, "matrixctl-hello:test", image.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
			created, err := cli.ContainerCreate(ctx, &container.Config{Image: "matrixctl-hello:test", Cmd: []string{"/hello", "print", "hello", "from", kernel}}, nil, nil, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
			defer wcancel()
			waitC, errC := cli.ContainerWait(wctx, created.ID, container.WaitConditionNotRunning)
			select {
			case w := <-waitC:
				if w.StatusCode != 0 {
					t.Errorf("container exit %d", w.StatusCode)
				}
			case err := <-errC:
				t.Fatal(err)
			}
			logs, err := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true})
			if err != nil {
				t.Fatal(err)
			}
			var stdout bytes.Buffer
			stdcopy.StdCopy(&stdout, io.Discard, logs)
			logs.Close()
			t.Logf("container said %q", stdout.String())
			if !strings.Contains(stdout.String(), "hello from "+kernel) {
				t.Errorf("container output %q", stdout.String())
			}
			exit := vm.Shutdown(ctx)
			t.Logf("exit: %s", exit)
			if exit.Reason != ExitShutdown {
				t.Errorf("exit %s, want %s", exit, ExitShutdown)
			}
			for _, name := range []string{"console.log", "agent.log", "dockerd.log", "qemu-cmdline.txt"} {
				if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
					t.Errorf("%s: missing or empty (%v)", name, err)
				}
			}
		})
	}
}

// TestIntegrationPanicAccelAuto boots with --accel auto in a cache of its own
// (which on the development machines ends on TCG after the KVM guest makes no
// progress), checks that the outcome is remembered for the host with its
// evidence and that a second VM follows it without trying KVM again, then
// makes that guest panic through /proc/sysrq-trigger and checks the console.
// On a host with no usable /dev/kvm (no device at all) there is no attempt
// to remember: both VMs must go straight to TCG and no decision is written.
func TestIntegrationPanicAccelAuto(t *testing.T) {
	f := integration(t, "6.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hostCache := t.TempDir()
	first := t.TempDir()
	cfg := f.config(t, first)
	cfg.Accel, cfg.MemoryMB, cfg.KVMHelloTimeout, cfg.CacheDir = AccelAuto, 1024, 20*time.Second, hostCache
	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := vm.WaitHello(ctx)
	vm.Close()
	assertReleased(t, vm, first)
	if err != nil {
		t.Fatal(err)
	}
	accel, fellBack, why := vm.Accel()
	t.Logf("first VM: accel auto ended on %s (fell back: %v %s); agent hello %s after launch", accel, fellBack, why, d)
	dec := ReadAccelDecision(hostCache)
	kvmErr := kvmUsable()
	if kvmErr != nil {
		// A host without a usable /dev/kvm (some of these machines have
		// none) never tries KVM, so there is nothing to decide or remember:
		// auto must go straight to TCG, with no attempt and no decision.
		t.Logf("/dev/kvm not usable here (%v): auto must not try kvm or record a decision", kvmErr)
		if accel != AccelTCG || fellBack {
			t.Errorf("first VM on %s (fell back %v), want tcg directly", accel, fellBack)
		}
		if _, err := os.Stat(filepath.Join(first, "console-kvm-attempt.log")); err == nil {
			t.Error("the first VM tried KVM although /dev/kvm is not usable")
		}
		if dec != nil {
			t.Errorf("host decision %+v recorded without a KVM attempt", dec)
		}
	} else if dec == nil || dec.Accel != accel || dec.Evidence == "" {
		t.Fatalf("host decision after the first VM: %+v, want %s with its evidence", dec, accel)
	} else {
		t.Logf("remembered: %s (attempt console %q)", dec, dec.AttemptConsole)
	}

	dir := t.TempDir()
	cfg = f.config(t, dir)
	cfg.Accel, cfg.MemoryMB, cfg.KVMHelloTimeout, cfg.CacheDir = AccelAuto, 1024, 20*time.Second, hostCache
	vm, err = Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		vm.Close()
		assertReleased(t, vm, dir)
	}()
	d, err = vm.WaitHello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	accel2, _, why2 := vm.Accel()
	t.Logf("second VM: %s (%s); agent hello %s after launch", accel2, why2, d)
	switch {
	case kvmErr != nil:
		if _, err := os.Stat(filepath.Join(dir, "console-kvm-attempt.log")); err == nil || accel2 != AccelTCG {
			t.Errorf("second VM on %s (attempt log: %v) although /dev/kvm is not usable", accel2, err == nil)
		}
	case dec.Accel == AccelTCG:
		if _, err := os.Stat(filepath.Join(dir, "console-kvm-attempt.log")); err == nil {
			t.Error("the second VM tried KVM again although the host decided tcg")
		}
		agentLog, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		if accel2 != AccelTCG || !bytes.Contains(agentLog, []byte("as decided for this host")) {
			t.Errorf("second VM on %s; agent.log does not cite the host decision:\n%s", accel2, agentLog)
		}
	}
	if err := vm.Command(ctx, agentproto.Command{Op: agentproto.OpSysrq, Arg: "c"}); err != nil {
		t.Fatal(err)
	}
	exit := vm.Wait()
	t.Logf("exit: %s", exit)
	if exit.Reason != ExitSelf {
		t.Errorf("exit %s, want %s", exit, ExitSelf)
	}
	console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if !bytes.Contains(console, []byte("Kernel panic - not syncing")) {
		t.Errorf("console.log lacks the panic; tail:\n%s", vm.ConsoleTail())
	}
	if i := bytes.Index(console, []byte("Kernel panic")); i >= 0 {
		t.Logf("console: %s", strings.SplitN(string(console[i:]), "\n", 2)[0])
	}
}

// TestIntegrationWatchdogUnsupported asks for aufs (no Debian kernel has it:
// the agent must report unsupported, not crash), then freezes QEMU with
// SIGSTOP and expects the watchdog to end the VM as a hang within its deadline.
// The deadline covers the systemd handover: between the initramfs agent's exec
// of /sbin/init and the guest agent's first heartbeat only the console speaks,
// and a loaded CI machine saw 4s of silence there (a false hang).
func TestIntegrationWatchdogUnsupported(t *testing.T) {
	f := integration(t, "6.1")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := f.config(t, dir)
	cfg.Driver, cfg.MemoryMB, cfg.Watchdog = "aufs", 1024, 30*time.Second
	var live testutil.SyncBuffer
	cfg.Console = &live
	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		vm.Close()
		assertReleased(t, vm, dir)
	}()
	_, err = vm.WaitDockerReady(ctx)
	var u *runner.UnsupportedError
	if !errors.As(err, &u) || !strings.Contains(u.Reason, "aufs") {
		t.Fatalf("aufs: got %v, want an unsupported error naming aufs", err)
	}
	t.Logf("aufs: %v", err)
	if !strings.Contains(live.String(), "Linux version") {
		t.Errorf("live console did not stream the boot banner")
	}
	frozen := time.Now()
	if err := vm.Freeze(); err != nil {
		t.Fatal(err)
	}
	exit := vm.Wait()
	took := time.Since(frozen)
	t.Logf("exit: %s; %s after SIGSTOP, silence %s", exit, took.Round(time.Millisecond), exit.Silence.Round(time.Millisecond))
	if exit.Reason != ExitWatchdog {
		t.Errorf("exit %s, want %s", exit, ExitWatchdog)
	}
	// The deadline: the watchdog's silence, then its QMP look for a host I/O
	// pause (which a stopped QEMU never answers), then 5s of slack.
	if exit.Silence < cfg.Watchdog || took > cfg.Watchdog+hostIOQueryTimeout+5*time.Second {
		t.Errorf("watchdog fired after %s of silence, %s after SIGSTOP; deadline %s", exit.Silence, took, cfg.Watchdog)
	}
	agentLog, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	if !strings.Contains(string(agentLog), "watchdog") {
		t.Errorf("agent.log does not note the watchdog:\n%s", agentLog)
	}
}
