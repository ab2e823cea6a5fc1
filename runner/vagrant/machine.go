package vagrant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/runner"
)

type machine struct {
	p         *Provider
	st        state
	dir, vdir string
	scratchFS string
	tail      *tail

	mu          sync.Mutex
	exit        runner.Exit
	exited      chan struct{}
	stopping    runner.ExitReason // set before we stop the domain ourselves
	info        runner.Info
	pid         runner.Process
	forward     *proc.Process
	host        string
	scratchCopy string
	watchStop   context.CancelFunc
	closed      bool
}

// setExit records why the domain stopped, once.
func (m *machine) setExit(e runner.Exit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.exited:
		return
	default:
	}
	m.exit = e
	close(m.exited)
}

// domState is virsh domstate's answer ("" when the domain does not exist).
func (m *machine) domState(ctx context.Context) string {
	out, err := m.p.virsh(ctx, "domstate", m.st.Domain, "--reason")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// stoppedStates are the `virsh domstate --reason` answers of a domain that
// stopped without us, and what each means. Only a stop the guest asked for
// (shut off (shutdown): with panic=-1 a panic reboots, -no-reboot makes
// QEMU report the reboot as a shutdown, and libvirt then ends QEMU) is the
// guest's doing; the others are the host's: QEMU failed to start (say, it
// could not read the kernel), QEMU died, or someone else destroyed it.
var stoppedStates = map[string]runner.ExitReason{
	"shut off (shutdown)":      runner.ExitCrashed,
	"crashed (panicked)":       runner.ExitCrashed,
	"paused (crashed)":         runner.ExitCrashed,
	"shut off (failed)":        runner.ExitInfra,
	"shut off (crashed)":       runner.ExitInfra,
	"shut off (destroyed)":     runner.ExitInfra,
	"shut off (daemon)":        runner.ExitInfra,
	"shut off (saved)":         runner.ExitInfra,
	"paused (I/O error)":       runner.ExitInfra,
	"paused (shutting down)":   "", // still on its way to shut off
	"paused (starting up)":     "", // libvirt has not resumed it yet
	"shut off (unknown)":       "", // defined, not started yet
	"shut off (from snapshot)": runner.ExitInfra,
}

// watch polls the domain until it stops and records how.
func (m *machine) watch(ctx context.Context, started chan<- struct{}) {
	seen := false
	for {
		s := m.domState(ctx)
		if ctx.Err() != nil {
			return
		}
		r, known := stoppedStates[s]
		switch {
		case !known && (strings.HasPrefix(s, "running") || strings.HasPrefix(s, "paused")):
			if !seen {
				seen = true
				if started != nil {
					close(started)
				}
			}
		case r == runner.ExitInfra && (seen || s == "shut off (failed)"),
			seen && (r != "" || !known):
			// Stopped (or gone) after it ran, or failed to start at all.
			m.mu.Lock()
			if m.stopping != "" {
				r = m.stopping
			}
			m.mu.Unlock()
			if r == "" {
				// Gone or in a state libvirt added later: not the guest's doing
				// as far as we can tell.
				r = runner.ExitInfra
			}
			detail := "domain " + m.st.Domain + ": " + orDefault(s, "gone")
			switch r {
			case runner.ExitCrashed:
				detail += " (the guest stopped by itself: with panic=-1 and -no-reboot only a panic or a reboot does that)"
			case runner.ExitInfra:
				if tail := qemuLogTail(m.st.Domain); tail != "" {
					detail += "; libvirt's QEMU log ends: " + tail
				}
			}
			m.setExit(runner.Exit{Reason: r, Detail: detail})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// up runs `vagrant up --no-provision` while watching the domain, so a guest
// that dies while booting ends the wait at once.
func (m *machine) up(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	m.mu.Lock()
	m.watchStop = cancel
	m.mu.Unlock()
	started := make(chan struct{})
	go m.watch(wctx, started)
	go func() {
		select {
		case <-started:
			if pid := qemuPid(m.st.Domain); pid > 0 {
				if pr, err := runner.ProcessOf(pid, false); err == nil {
					m.mu.Lock()
					m.pid = pr
					m.mu.Unlock()
				}
			}
		case <-wctx.Done():
		}
	}()
	uctx, ucancel := context.WithTimeout(ctx, m.p.bootTimeout())
	defer ucancel()
	go func() {
		select {
		case <-m.exited:
			ucancel()
		case <-uctx.Done():
		}
	}()
	logf, err := os.Create(filepath.Join(m.dir, "vagrant-up.log"))
	if err != nil {
		return runner.Infra("vagrant up log", err)
	}
	defer logf.Close()
	_, err = proc.Run(uctx, proc.Cmd{Argv: []string{"vagrant", "up", "--provider=libvirt", "--no-provision"},
		Dir: m.vdir, Env: m.p.Env, Out: logf})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return runner.Infra("vagrant up", err)
	}
	out, err := proc.Output(ctx, proc.Cmd{Argv: []string{"vagrant", "ssh-config"}, Dir: m.vdir, Env: m.p.Env})
	if err != nil {
		return runner.Infra("vagrant ssh-config", err)
	}
	if err := os.WriteFile(filepath.Join(m.vdir, "ssh-config"), []byte(out), 0o600); err != nil {
		return runner.Infra("ssh-config", err)
	}
	return nil
}

// SSH runs a command in the guest as the vagrant user (through the
// ssh-config `vagrant ssh-config` wrote) and returns its output.
func (m *machine) SSH(ctx context.Context, command string) (string, error) {
	return proc.Output(ctx, proc.Cmd{Argv: []string{"ssh", "-F", filepath.Join(m.vdir, "ssh-config"),
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "default", command}})
}

// SSHer is implemented by the machines of this provider (tests use it to
// act inside the guest).
type SSHer interface {
	SSH(ctx context.Context, command string) (string, error)
}

// WaitDocker provisions the guest (Docker on the scratch disk), forwards the
// guest's docker.sock to a port on 127.0.0.1 over SSH and pings it.
func (m *machine) WaitDocker(ctx context.Context) (string, error) {
	select {
	case <-m.exited:
		return "", errors.New("the domain stopped before docker was ready")
	default:
	}
	dctx, cancel := context.WithTimeout(ctx, m.p.dockerTimeout())
	defer cancel()
	go func() {
		select {
		case <-m.exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	logf, err := os.Create(filepath.Join(m.dir, "provision.log"))
	if err != nil {
		return "", runner.Infra("provision log", err)
	}
	_, err = proc.Run(dctx, proc.Cmd{Argv: []string{"vagrant", "provision"}, Dir: m.vdir, Env: m.p.Env, Out: logf})
	logf.Close()
	if err != nil {
		var ee *proc.Error
		switch {
		case ctx.Err() != nil:
			return "", ctx.Err()
		case errors.As(err, &ee) && strings.Contains(ee.Output, "matrixctl-provision: unsupported:"):
			return "", &runner.UnsupportedError{Reason: lastLine(ee.Output, "matrixctl-provision: unsupported:")}
		}
		return "", fmt.Errorf("provisioning docker (see provision.log): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", runner.Infra("free port", err)
	}
	fwdLog, err := os.Create(filepath.Join(m.dir, "ssh-forward.log"))
	if err != nil {
		return "", runner.Infra("forward log", err)
	}
	// It lives until Close kills it, not until ctx ends.
	fwd, err := proc.Start(context.Background(), proc.Cmd{Argv: []string{"ssh", "-F", filepath.Join(m.vdir, "ssh-config"),
		"-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5",
		"-L", "127.0.0.1:" + strconv.Itoa(port) + ":/var/run/docker.sock", "default"}, Stdout: fwdLog, Stderr: fwdLog})
	if err != nil {
		fwdLog.Close()
		return "", runner.Infra("ssh forward", err)
	}
	go func() { _ = fwd.Wait(); fwdLog.Close() }()
	host := "tcp://127.0.0.1:" + strconv.Itoa(port)
	m.mu.Lock()
	m.forward, m.host = fwd, host
	m.mu.Unlock()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(dctx, 5*time.Second)
		v, err := dockerPing(pctx, host)
		pcancel()
		if err == nil {
			rel, _ := m.SSH(dctx, "uname -r")
			m.mu.Lock()
			m.info = runner.Info{KernelRelease: strings.TrimSpace(rel), DockerServer: v}
			m.mu.Unlock()
			return host, nil
		}
		last = err
		select {
		case <-dctx.Done():
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("dockerd did not answer through the ssh forward: %w", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func lastLine(out, marker string) string {
	r := ""
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, marker); i >= 0 {
			r = strings.TrimSpace(l[i+len("matrixctl-provision: "):])
		}
	}
	return r
}

func (m *machine) Ping(ctx context.Context) error {
	m.mu.Lock()
	host := m.host
	m.mu.Unlock()
	if host == "" {
		return errors.New("dockerd never became ready")
	}
	_, err := dockerPing(ctx, host)
	return err
}

func (m *machine) Exited() <-chan struct{} { return m.exited }

func (m *machine) Exit() runner.Exit {
	select {
	case <-m.exited:
	default:
		return runner.Exit{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

// Shutdown powers the guest off from inside and waits for the domain to
// stop, then copies the scratch volume for the host-side checker.
func (m *machine) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.stopping = runner.ExitShutdown
	m.mu.Unlock()
	_, _ = m.SSH(ctx, "sudo sync; sudo umount /var/lib/docker 2>/dev/null; sudo systemctl poweroff --no-block")
	select {
	case <-m.exited:
	case <-ctx.Done():
		return fmt.Errorf("domain %s did not power off: %w", m.st.Domain, ctx.Err())
	}
	if e := m.Exit(); e.Reason != runner.ExitShutdown {
		return fmt.Errorf("guest did not power off: %s", e.Detail)
	}
	return m.copyScratch(ctx)
}

// copyScratch copies the domain's scratch volume (its second disk) into the
// run directory, sparse, so the checker reads it after the domain is gone.
func (m *machine) copyScratch(ctx context.Context) error {
	out, err := m.p.virsh(ctx, "domblklist", m.st.Domain, "--details")
	if err != nil {
		return err
	}
	var src string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[1] == "disk" && f[2] == "vdb" {
			src = f[3]
		}
	}
	if src == "" {
		return fmt.Errorf("domain %s has no vdb: %s", m.st.Domain, out)
	}
	dst := filepath.Join(m.dir, "scratch.img")
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"cp", "--sparse=always", src, dst}}); err != nil {
		return err
	}
	m.mu.Lock()
	m.scratchCopy = dst
	m.mu.Unlock()
	return nil
}

func (m *machine) Kill() error {
	m.mu.Lock()
	if m.stopping == "" {
		m.stopping = runner.ExitKilled
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = m.p.virsh(ctx, "destroy", m.st.Domain)
	select {
	case <-m.exited:
	case <-ctx.Done():
		return fmt.Errorf("domain %s still runs after virsh destroy", m.st.Domain)
	}
	return nil
}

func (m *machine) Scratch() runner.Scratch {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.scratchCopy == "" {
		return runner.Scratch{}
	}
	return runner.Scratch{Path: m.scratchCopy, FS: m.scratchFS}
}

func (m *machine) Process() runner.Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
}

var machineArtifacts = map[string]string{
	"serial": "serial.log", "vagrant-up": "vagrant-up.log", "provision": "provision.log",
	"vagrant-destroy": "vagrant-destroy.log", "vagrantfile": "vagrant/Vagrantfile", "prepare": "prepare.log",
	"ssh-forward": "ssh-forward.log", "libvirt-qemu": "libvirt-qemu.log",
}

func (m *machine) Artifacts() map[string]string {
	return runner.ExistingArtifacts(m.dir, machineArtifacts)
}

func (m *machine) Info() runner.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}

// Close stops the forward, destroys the domain and its volumes, and drains
// the console. It runs on every exit path (also after a Ctrl-C: it does not
// use the run's context).
func (m *machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	fwd := m.forward
	if m.stopping == "" {
		m.stopping = runner.ExitKilled
	}
	m.mu.Unlock()
	if fwd != nil {
		_ = fwd.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	logf, err := os.Create(filepath.Join(m.dir, "vagrant-destroy.log"))
	if err == nil {
		_, derr := proc.Run(ctx, proc.Cmd{Argv: []string{"vagrant", "destroy", "-f"}, Dir: m.vdir, Env: m.p.Env, Out: logf})
		logf.Close()
		if derr != nil {
			errs = append(errs, derr)
		}
	}
	if m.p.domainExists(ctx, m.st.Domain) {
		errs = append(errs, m.p.destroy(ctx, m.st))
	}
	m.p.removeStaged(m.st)
	keepQemuLog(m.st.Domain, m.dir)
	m.setExit(runner.Exit{Reason: runner.ExitKilled, Detail: "destroyed"})
	m.mu.Lock()
	stop := m.watchStop
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
	m.tail.stop()
	if m.p.domainExists(ctx, m.st.Domain) {
		return fmt.Errorf("domain %s still exists after destroy: %w", m.st.Domain, errors.Join(errs...))
	}
	return nil
}

// keepQemuLog moves libvirt's QEMU log of a stopped domain into its run
// directory (evidence when QEMU itself failed; nothing is left in /var/log).
func keepQemuLog(domain, runDir string) {
	src := qemuLogPath(domain)
	b, err := os.ReadFile(src)
	if err != nil {
		return
	}
	if err := os.WriteFile(filepath.Join(runDir, "libvirt-qemu.log"), b, 0o644); err == nil {
		_ = os.Remove(src)
	}
}

// tail copies a growing file (the serial console virtlogd writes) to w
// until stopped, then drains what is left.
type tail struct {
	done chan struct{}
	quit chan struct{}
}

func startTail(path string, w io.Writer) *tail {
	t := &tail{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(t.done)
		var f *os.File
		buf := make([]byte, 64<<10)
		for {
			if f == nil {
				if g, err := os.Open(path); err == nil {
					f = g
					defer f.Close()
				}
			}
			if f != nil {
				for {
					n, err := f.Read(buf)
					if n > 0 {
						_, _ = w.Write(buf[:n])
					}
					if err != nil || n == 0 {
						break
					}
				}
			}
			select {
			case <-t.quit:
				if f != nil {
					_, _ = io.Copy(w, f)
				}
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return t
}

func (t *tail) stop() {
	select {
	case <-t.quit:
	default:
		close(t.quit)
	}
	<-t.done
}
