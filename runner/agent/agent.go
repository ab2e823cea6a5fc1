package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

type agent struct {
	start  time.Time
	reaper *reaper

	chMu sync.Mutex
	ch   *os.File // the agent channel; nil until opened

	stMu  sync.Mutex
	state agentproto.State

	cfg     agentproto.BootConfig
	release string

	dockerMu   sync.Mutex
	dockerd    *started
	containerd *started // nil when dockerd manages its own

	scratchMount string

	// guest is true in guest mode (init: systemd): systemd is PID 1 and owns
	// dockerd. cmdline is the guest's /proc/cmdline.
	guest   bool
	cmdline string
	// readyPID is docker.service's main process at docker-ready (guest mode).
	readyPID atomic.Int64

	// stopWriting is closed by shutdown; write-loops stop and close their
	// files (writers tracks them) before the scratch fs is unmounted.
	stopWriting chan struct{}
	stopOnce    sync.Once // shutdown may be asked for more than once
	writers     sync.WaitGroup
}

func newAgent() *agent {
	return &agent{start: time.Now(), state: agentproto.StateBooted, stopWriting: make(chan struct{})}
}

// errUnsupported marks a step that failed because the kernel or rootfs
// cannot provide what the cell needs (reported as unsupported, not error).
type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string { return e.reason }

func unsupportedf(format string, args ...any) error {
	return &unsupportedError{reason: fmt.Sprintf(format, args...)}
}

// introduce is how both inits start talking to the host: read the kernel
// release and the boot config from the command line, open the agent
// channel, say hello and start the heartbeat.
func (a *agent) introduce() {
	a.reaper = newReaper()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		a.release = unix.ByteSliceToString(uts.Release[:])
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	a.cmdline = strings.TrimSpace(string(cmdline))
	a.configure(a.cmdline)
	if err := a.openChannel(a.cfg.Channel); err != nil {
		a.console("agent channel %s: %v", a.cfg.Channel, err)
	}
	a.send(agentproto.Message{Type: agentproto.TypeHello, Release: a.release, AgentVersion: agentVersion()})
	go a.heartbeat()
}

func (a *agent) run() {
	a.console("starting")
	os.Setenv("PATH", systemPath) // the kernel starts init without one; exec.LookPath needs it
	if err := mountEarly(); err != nil {
		a.console("early mounts: %v", err)
	}
	a.introduce()
	go a.serve()
	if err := a.bringUp(); err != nil {
		var u *unsupportedError
		if errors.As(err, &u) {
			a.setState(agentproto.StateUnsupported, u.reason)
		} else {
			a.setState(agentproto.StateError, err.Error())
		}
		a.console("%v", err)
	}
	select {} // serve commands until the host shuts us down
}

// configure reads the cell's BootConfig from the kernel command line.
func (a *agent) configure(cmdline string) {
	cfg, err := agentproto.ParseCmdline(cmdline)
	if err != nil {
		a.console("%v", err)
	}
	if cfg.Channel == "" {
		cfg.Channel = "/dev/ttyS1"
	}
	if cfg.DockerdTimeoutS == 0 {
		cfg.DockerdTimeoutS = 180
	}
	a.cfg = cfg
}

func agentVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return bi.Main.Path + "@" + s.Value
			}
		}
		return bi.Main.Path + " " + bi.GoVersion
	}
	return "unknown"
}

// bringUp is the boot sequence; each step reports its state.
func (a *agent) bringUp() error {
	if err := a.loadInitramfsModules(); err != nil {
		return err
	}
	a.setState(agentproto.StateModulesLoaded, "")
	if a.cfg.InitMode() == agentproto.InitSystemd {
		return a.bootSystemd() // returns only when it failed
	}
	if err := a.switchRoot(); err != nil {
		return err
	}
	if err := a.setupSystem(); err != nil {
		return err
	}
	a.setState(agentproto.StateRootMounted, "")
	spec, err := a.prepareHost()
	if err != nil {
		return err
	}
	a.setState(agentproto.StateDockerStarting, "")
	version, err := a.startDocker(spec)
	if err != nil {
		return err
	}
	if err := a.proxyDocker(); err != nil {
		return err
	}
	a.stMu.Lock()
	a.state = agentproto.StateDockerReady
	a.stMu.Unlock()
	a.send(agentproto.Message{Type: agentproto.TypeState, State: agentproto.StateDockerReady, DockerVersion: version,
		Init: "matrixctl-agent " + agentVersion(), Cmdline: a.cmdline})
	a.logf("docker %s ready after %s", version, time.Since(a.start).Round(time.Millisecond))
	a.console("docker-ready %s", version) // a console marker, e.g. for boot benchmarks
	return nil
}

func (a *agent) setState(s agentproto.State, reason string) {
	a.stMu.Lock()
	a.state = s
	a.stMu.Unlock()
	a.send(agentproto.Message{Type: agentproto.TypeState, State: s, Reason: reason})
	if reason != "" {
		a.logf("state %s: %s", s, reason)
	}
}

func (a *agent) currentState() agentproto.State {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	return a.state
}

// console writes to the kernel console; only used when the channel is down or for fatal news.
func (a *agent) console(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "matrixctl-agent: "+format+"\n", args...)
}

func (a *agent) logf(format string, args ...any) {
	a.send(agentproto.Message{Type: agentproto.TypeLog, Source: agentproto.SourceAgent, Line: fmt.Sprintf(format, args...)})
}

func (a *agent) send(m agentproto.Message) {
	m.V = agentproto.Version
	m.UptimeMS = uptimeMS()
	b, err := agentproto.Encode(m)
	if err != nil {
		return
	}
	a.chMu.Lock()
	defer a.chMu.Unlock()
	if a.ch == nil {
		return
	}
	a.ch.Write(b)
}

func uptimeMS() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e6
}

func (a *agent) openChannel(dev string) error {
	var f *os.File
	var err error
	for i := 0; i < 50; i++ {
		f, err = os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY, 0)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
		t.Cflag |= unix.CS8 | unix.B115200 | unix.CLOCAL | unix.CREAD
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
			a.console("raw mode on %s: %v", dev, err)
		}
	}
	a.chMu.Lock()
	a.ch = f
	a.chMu.Unlock()
	return nil
}

func (a *agent) heartbeat() {
	var seq uint64
	for range time.Tick(time.Second) {
		seq++
		a.send(agentproto.Message{Type: agentproto.TypeHeartbeat, Seq: seq, State: a.currentState()})
	}
}

// serve reads host commands from the channel.
func (a *agent) serve() {
	a.chMu.Lock()
	ch := a.ch
	a.chMu.Unlock()
	if ch == nil {
		return
	}
	sc := bufio.NewScanner(ch)
	sc.Buffer(make([]byte, 4096), agentproto.MaxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.HasPrefix(strings.TrimSpace(string(line)), "{") {
			continue
		}
		c, err := agentproto.DecodeCommand(line)
		if err != nil {
			a.logf("bad command: %v", err)
			continue
		}
		go a.handle(c)
	}
	a.console("agent channel closed: %v", sc.Err())
}

// handlers maps each command to its implementation.
var handlers = map[agentproto.Op]func(*agent, agentproto.Command) error{
	agentproto.OpShutdown:    (*agent).cmdShutdown,
	agentproto.OpSysrq:       (*agent).cmdSysrq,
	agentproto.OpFreeze:      func(a *agent, c agentproto.Command) error { return fsIoctl(c.Arg, fiFreeze) },
	agentproto.OpThaw:        func(a *agent, c agentproto.Command) error { return fsIoctl(c.Arg, fiThaw) },
	agentproto.OpKillDockerd: (*agent).cmdKillDockerd,
	agentproto.OpDockerCheck: (*agent).cmdDockerCheck,
	agentproto.OpSysctl:      (*agent).cmdSysctl,
	agentproto.OpWriteLoop:   (*agent).cmdWriteLoop,
}

func (a *agent) handle(c agentproto.Command) {
	h, ok := handlers[c.Op]
	var err error
	if !ok {
		err = fmt.Errorf("unknown command %q", c.Op)
	}
	reply := func(err error) {
		m := agentproto.Message{Type: agentproto.TypeReply, ID: c.ID}
		if err != nil {
			m.Error = err.Error()
		}
		a.send(m)
	}
	if err != nil {
		reply(err)
		return
	}
	if c.Op == agentproto.OpSysrq || c.Op == agentproto.OpShutdown {
		// These may not return: answer first.
		reply(nil)
		if err := h(a, c); err != nil {
			a.logf("%s: %v", c.Op, err)
		}
		return
	}
	reply(h(a, c))
}
