// Package local is the provider that runs a cell on the host's own dockerd
// (DOCKER_HOST or the default socket): no VM, no console, no scratch disk.
// `matrixctl run --provider local` uses it so an engineer can qualify the
// machine they stand on with the same probes and verdicts as a VM cell.
//
// What this provider cannot see is recorded honestly: the run carries a
// "no-console" finding (kernel messages were not analysed) and no checker
// result (the host's filesystem is not unmounted to be checked). It never
// stops or restarts the host's dockerd.
package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
)

// Name is the provider's name in results.json and on the command line.
const Name = "local"

// Provider runs cells against the host's dockerd.
type Provider struct {
	// Host is the daemon's address; empty means DOCKER_HOST or the default socket.
	Host string
	// ReadyTimeout bounds waiting for the daemon to answer (0: 30 s).
	ReadyTimeout time.Duration
}

var _ runner.Provider = (*Provider)(nil)

// Name implements runner.Provider.
func (p *Provider) Name() string { return Name }

func (p *Provider) client() (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if p.Host != "" {
		opts = append(opts, client.WithHost(p.Host))
	}
	return client.NewClientWithOpts(opts...)
}

// Prepare checks that the host's daemon answers; nothing is downloaded.
func (p *Provider) Prepare(ctx context.Context, _ runner.Request) error {
	cli, err := p.client()
	if err != nil {
		return runner.Infra("docker client", err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		return runner.Infra("ping host dockerd at "+cli.DaemonHost(), err)
	}
	return nil
}

// Boot "boots" the host: it connects to its dockerd and records what it is.
func (p *Provider) Boot(ctx context.Context, req runner.Request) (runner.Machine, error) {
	cli, err := p.client()
	if err != nil {
		return nil, runner.Infra("docker client", err)
	}
	fmt.Fprintf(req.Console, "matrixctl: provider local has no console; kernel messages of this host are not analysed\n")
	return &machine{p: p, cli: cli, dir: req.Dir, exited: make(chan struct{})}, nil
}

type machine struct {
	p   *Provider
	cli *client.Client
	dir string

	mu        sync.Mutex
	info      runner.Info
	artifacts map[string]string
	exit      runner.Exit
	exited    chan struct{}
	once      sync.Once
}

func (m *machine) WaitDocker(ctx context.Context) (string, error) {
	t := m.p.ReadyTimeout
	if t == 0 {
		t = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	var last error
	for {
		if _, err := m.cli.Ping(wctx); err == nil {
			break
		} else {
			last = err
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("host dockerd at %s did not answer within %s: %w", m.cli.DaemonHost(), t, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	m.record(ctx)
	return m.cli.DaemonHost(), nil
}

// record keeps the daemon's version and info as an artifact and in Info.
func (m *machine) record(ctx context.Context) {
	var uts unix.Utsname
	release := ""
	if err := unix.Uname(&uts); err == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	info := runner.Info{KernelRelease: release, NoConsole: true}
	arts := map[string]string{}
	if v, err := m.cli.ServerVersion(ctx); err == nil {
		info.DockerServer = v.Version
	}
	if di, err := m.cli.Info(ctx); err == nil {
		if b, err := json.MarshalIndent(di, "", "  "); err == nil {
			if runner.WriteFileAtomic(filepath.Join(m.dir, "docker-info.json"), append(b, '\n'), 0o644) == nil {
				arts["docker-info"] = "docker-info.json"
			}
		}
	}
	m.mu.Lock()
	m.info, m.artifacts = info, arts
	m.mu.Unlock()
}

func (m *machine) Ping(ctx context.Context) error {
	_, err := m.cli.Ping(ctx)
	return err
}

func (m *machine) Exited() <-chan struct{} { return m.exited }

func (m *machine) Exit() runner.Exit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

func (m *machine) stop(r runner.ExitReason) {
	m.once.Do(func() {
		m.mu.Lock()
		m.exit = runner.Exit{Reason: r}
		m.mu.Unlock()
		close(m.exited)
	})
}

// Shutdown ends the run; the host and its dockerd keep running.
func (m *machine) Shutdown(context.Context) error { m.stop(runner.ExitShutdown); return nil }
func (m *machine) Kill() error                    { m.stop(runner.ExitKilled); return nil }
func (m *machine) Scratch() runner.Scratch        { return runner.Scratch{} }
func (m *machine) Process() runner.Process        { return runner.Process{} }

func (m *machine) Artifacts() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.artifacts
}

func (m *machine) Info() runner.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.info.KernelRelease == "" {
		return runner.Info{NoConsole: true}
	}
	return m.info
}

func (m *machine) Close() error {
	m.stop(runner.ExitKilled)
	return m.cli.Close()
}

// HostCell describes the machine the controller stands on as one cell:
// its kernel release, distro (from /etc/os-release), dockerd version and
// storage driver. settings are the run settings to use.
func HostCell(ctx context.Context, p *Provider, settings matrix.Settings) (matrix.Cell, error) {
	cli, err := p.client()
	if err != nil {
		return matrix.Cell{}, runner.Infra("docker client", err)
	}
	defer cli.Close()
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	info, err := cli.Info(ictx)
	if err != nil {
		return matrix.Cell{}, runner.Infra("host dockerd at "+cli.DaemonHost(), err)
	}
	var uts unix.Utsname
	release := "unknown"
	if err := unix.Uname(&uts); err == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	distro, suite := osRelease("/etc/os-release")
	c := matrix.Cell{
		Kernel:   matrix.KernelRef{Version: release},
		Distro:   matrix.DistroRef{Name: distro, Suite: suite},
		Docker:   matrix.DockerRef{Version: info.ServerVersion},
		Driver:   info.Driver,
		Status:   matrix.StatusRunnable,
		Settings: settings,
	}
	c.ID = idSafe(fmt.Sprintf("local-k%s-%s-docker%s-%s", release, distro, info.ServerVersion, info.Driver))
	return c, nil
}

// osRelease returns ID+VERSION_ID ("debian12") and VERSION_CODENAME.
func osRelease(path string) (name, suite string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown", ""
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			kv[k] = strings.Trim(v, `"'`)
		}
	}
	name = kv["ID"] + kv["VERSION_ID"]
	if name == "" {
		name = "unknown"
	}
	return idSafe(name), kv["VERSION_CODENAME"]
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9._+-]+`)

func idSafe(s string) string { return unsafe.ReplaceAllString(s, "_") }
