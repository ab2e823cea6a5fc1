package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// script is what a fake machine of one cell does.
type script struct {
	prepareErr   error
	prepareDelay time.Duration // Prepare sleeps this long (a cold, contended cache)
	bootErrs     []error       // per attempt; nil entries boot
	console      string        // written to the console after boot
	// crashAfterConsole makes the machine exit by itself after the console text.
	exitDuringProbes *Exit
	dockerErr        error
	probes           ProbeReport
	probeErr         error
	probeBlocks      bool // probes run until cancelled
	pingErr          error
	shutdownErr      error
	scratchDirty     bool
	noConsole        bool
	// spawn starts a real process standing in for the VM (for orphan tests).
	spawn []string
	// verify is the crash check's verification; rebootConsole is written
	// to the console of the machine booted after the power cut.
	verify        ProbeReport
	rebootConsole string
	// preflight is what Preflight reports after Prepare.
	preflight []results.Finding
}

type fakeProvider struct {
	mu       sync.Mutex
	scripts  map[string]*script
	attempts map[string]int
	boots    int
	machines []*fakeMachine
}

func newFake(scripts map[string]*script) *fakeProvider {
	return &fakeProvider{scripts: scripts, attempts: map[string]int{}}
}

func (p *fakeProvider) Name() string { return "fake" }

func (p *fakeProvider) script(id string) *script {
	if s, ok := p.scripts[id]; ok {
		return s
	}
	return &script{probes: ProbeReport{Probes: []results.Probe{{Name: "io", OK: true}}}}
}

func (p *fakeProvider) Prepare(_ context.Context, req Request) error {
	s := p.script(req.Cell.ID)
	time.Sleep(s.prepareDelay)
	return s.prepareErr
}

var _ Preflighter = (*fakeProvider)(nil)

func (p *fakeProvider) Preflight(req Request) []results.Finding {
	return p.script(req.Cell.ID).preflight
}

func (p *fakeProvider) Boot(_ context.Context, req Request) (Machine, error) {
	s := p.script(req.Cell.ID)
	p.mu.Lock()
	key := fmt.Sprintf("%s/%d", req.Cell.ID, req.Repeat)
	p.attempts[key]++
	n := p.attempts[key]
	p.boots++
	p.mu.Unlock()
	if n <= len(s.bootErrs) && s.bootErrs[n-1] != nil {
		return nil, s.bootErrs[n-1]
	}
	m := &fakeMachine{s: s, req: req, exited: make(chan struct{})}
	if len(s.spawn) > 0 {
		cmd := exec.Command(s.spawn[0], s.spawn[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, Infra("spawn", err)
		}
		m.cmd = cmd
	}
	if s.scratchDirty || true {
		m.scratch = filepath.Join(req.Dir, "scratch.img")
		content := "clean"
		if s.scratchDirty {
			content = "dirty"
		}
		if err := os.WriteFile(m.scratch, []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(req.Dir, "agent.log"), []byte("agent: started\n"), 0o644); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.machines = append(p.machines, m)
	p.mu.Unlock()
	if s.console != "" {
		fmt.Fprint(req.Console, s.console)
	}
	return m, nil
}

type fakeMachine struct {
	s       *script
	req     Request
	cmd     *exec.Cmd
	scratch string

	mu     sync.Mutex
	exit   Exit
	exited chan struct{}
	closed bool
}

func (m *fakeMachine) stop(e Exit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.exited:
		return
	default:
	}
	m.exit = e
	if m.cmd != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		_ = m.cmd.Wait()
	}
	close(m.exited)
}

func (m *fakeMachine) WaitDocker(ctx context.Context) (string, error) {
	if m.s.dockerErr != nil {
		return "", m.s.dockerErr
	}
	return "fake://" + m.req.Cell.ID, nil
}

func (m *fakeMachine) Ping(context.Context) error { return m.s.pingErr }
func (m *fakeMachine) Exited() <-chan struct{}    { return m.exited }
func (m *fakeMachine) Exit() Exit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

func (m *fakeMachine) Shutdown(ctx context.Context) error {
	if m.s.shutdownErr != nil {
		return m.s.shutdownErr
	}
	m.stop(Exit{Reason: ExitShutdown})
	return nil
}

func (m *fakeMachine) Kill() error { m.stop(Exit{Reason: ExitKilled}); return nil }

func (m *fakeMachine) Scratch() Scratch {
	if m.scratch == "" {
		return Scratch{}
	}
	return Scratch{Path: m.scratch, FS: "ext4"}
}

func (m *fakeMachine) Process() Process {
	if m.cmd == nil {
		return Process{}
	}
	p, err := ProcessOf(m.cmd.Process.Pid, true)
	if err != nil {
		return Process{}
	}
	return p
}

func (m *fakeMachine) Artifacts() map[string]string { return map[string]string{"agent": "agent.log"} }
func (m *fakeMachine) Info() Info {
	return Info{KernelRelease: "6.1.0-fake", DockerServer: "20.10.24", NoConsole: m.s.noConsole}
}

func (m *fakeMachine) Close() error {
	m.stop(Exit{Reason: ExitKilled})
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

// fakeProber plays the scripts of the machines it is pointed at.
type fakeProber struct{ p *fakeProvider }

func (f fakeProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	id := strings.TrimPrefix(req.DockerHost, "fake://")
	s := f.p.script(id)
	if err := os.WriteFile(req.RecordsPath, fmt.Appendf(nil, `{"schema":"fake","probe":"io","cell":%q}`+"\n", id), 0o644); err != nil {
		return ProbeReport{}, Infra("records", err)
	}
	if s.exitDuringProbes != nil {
		f.p.mu.Lock()
		var m *fakeMachine
		for _, x := range f.p.machines {
			if x.req.Cell.ID == id {
				m = x
			}
		}
		f.p.mu.Unlock()
		m.stop(*s.exitDuringProbes)
		<-ctx.Done()
		return ProbeReport{}, ctx.Err()
	}
	if s.probeBlocks {
		<-ctx.Done()
		return s.probes, ctx.Err()
	}
	return s.probes, s.probeErr
}

// fakeChecker calls a scratch image dirty if it says so.
func fakeChecker(_ context.Context, s Scratch) (*results.Checker, error) {
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, err
	}
	dirty := strings.Contains(string(b), "dirty")
	c := &results.Checker{Tool: "e2fsck", Args: []string{"-fn", s.Path}, Clean: !dirty}
	if dirty {
		c.ExitCode, c.Output = 4, "Inode 12 has illegal blocks"
	}
	return c, nil
}

// lineScanner is a tiny console scanner for tests: one finding per line
// that starts with a known marker.
type lineScanner struct {
	mu       sync.Mutex
	buf      []byte
	line     int
	findings []results.Finding
	on       func(results.Finding)
}

var testSignatures = []struct {
	prefix string
	cat    results.Category
	sev    results.Severity
}{
	{"Kernel panic", results.CatKernelPanic, results.SevFatal},
	{"INFO: task", results.CatHungTask, results.SevError},
	{"EXT4-fs error", results.CatExt4Error, results.SevError},
	{"I/O error", results.CatIOError, results.SevError},
}

func newLineScanner(on func(results.Finding)) ConsoleScanner { return &lineScanner{on: on} }

func (s *lineScanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := strings.IndexByte(string(s.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(s.buf[:i])
		s.buf = s.buf[i+1:]
		s.line++
		for _, sig := range testSignatures {
			if strings.HasPrefix(line, sig.prefix) {
				f := results.Finding{Source: "console", Category: sig.cat, Severity: sig.sev, Title: line, StartLine: s.line, EndLine: s.line}
				s.findings = append(s.findings, f)
				s.on(f)
			}
		}
	}
}

func (s *lineScanner) Close() []results.Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findings
}

var errBoot = errors.New("qemu: could not start")
