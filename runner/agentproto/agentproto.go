// Package agentproto is the protocol between the host (runner/qemu) and the
// guest agent (runner/agent) that runs as the guest's init.
//
// The channel is a byte stream separate from the kernel console (under QEMU,
// the guest's second serial port). Each direction carries JSON objects, one per
// line. Every object has a version field V; a peer drops lines it cannot decode
// (the stream may carry noise from the guest's early boot) and rejects objects
// with a different major version.
//
// Guest → host: Message (hello, state, heartbeat, log, reply, shutdown).
// Host → guest: Command (shutdown, sysrq, freeze, thaw, kill-dockerd, sysctl,
// write-loop). Commands are small and explicit; there is no shell.
//
// The host passes the cell's settings to the agent on the kernel command line
// (see BootConfig), so the agent needs nothing from the host before it starts.
package agentproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is the protocol version both sides speak.
const Version = 1

// MaxLine bounds one protocol line; longer lines are dropped by the reader.
const MaxLine = 64 << 10

// Type is the kind of a guest → host message.
type Type string

// Message types.
const (
	TypeHello     Type = "hello"     // agent started; Release is set
	TypeState     Type = "state"     // State changed; Reason/DockerVersion may be set
	TypeHeartbeat Type = "heartbeat" // once a second; Seq counts up, State repeats the current state
	TypeLog       Type = "log"       // a log line from Source
	TypeReply     Type = "reply"     // answer to the Command with the same ID; Error is set on failure
	TypeShutdown  Type = "shutdown"  // the agent is about to power off
	// TypeDockerExit: dockerd's main process exited after docker-ready;
	// Reason says which process and what its init does about it. Under
	// init: systemd, docker.service's Restart= starts a new dockerd, and
	// the containers of the old one are gone: the host judges the run a
	// docker-failure even though dockerd answers again.
	TypeDockerExit Type = "docker-exit"
)

// State is the agent's progress through bringing up a cell.
type State string

// States, in the order a healthy boot passes them. Unsupported and Error are final.
const (
	StateBooted         State = "booted"
	StateModulesLoaded  State = "modules-loaded"
	StateRootMounted    State = "root-mounted"
	StateScratchReady   State = "scratch-ready"
	StateDockerStarting State = "docker-starting"
	StateDockerReady    State = "docker-ready"
	StateUnsupported    State = "unsupported" // the kernel cannot provide what the cell needs; Reason says what
	StateError          State = "error"       // the agent failed; Reason says how
)

// Log sources.
const (
	SourceAgent   = "agent"
	SourceDockerd = "dockerd"
	SourceJournal = "journal" // the guest's systemd journal of this boot (init: systemd)
)

// Message is one guest → host line.
type Message struct {
	V    int  `json:"v"`
	Type Type `json:"type"`
	// UptimeMS is the guest's CLOCK_MONOTONIC in milliseconds when the message was sent.
	UptimeMS int64 `json:"uptime_ms,omitempty"`

	Release       string `json:"release,omitempty"`        // hello: uname -r
	AgentVersion  string `json:"agent_version,omitempty"`  // hello: build info of the agent
	State         State  `json:"state,omitempty"`          // state, heartbeat
	Reason        string `json:"reason,omitempty"`         // state unsupported/error
	DockerVersion string `json:"docker_version,omitempty"` // state docker-ready
	Init          string `json:"init,omitempty"`           // state docker-ready: the guest's init, e.g. "systemd 252 (252.39-1~deb12u1)"
	Cmdline       string `json:"cmdline,omitempty"`        // state docker-ready: the guest's /proc/cmdline
	Seq           uint64 `json:"seq,omitempty"`            // heartbeat
	Source        string `json:"source,omitempty"`         // log
	Line          string `json:"line,omitempty"`           // log
	ID            uint64 `json:"id,omitempty"`             // reply
	Error         string `json:"error,omitempty"`          // reply
}

// Op is a host → guest command.
type Op string

// Commands.
const (
	OpShutdown    Op = "shutdown"     // sync, stop dockerd, unmount scratch, power off
	OpSysrq       Op = "sysrq"        // write Arg (one character) to /proc/sysrq-trigger
	OpFreeze      Op = "freeze"       // FIFREEZE the filesystem mounted at Arg
	OpThaw        Op = "thaw"         // FITHAW the filesystem mounted at Arg
	OpKillDockerd Op = "kill-dockerd" // SIGKILL dockerd
	// OpDockerCheck fails when the dockerd that became ready is no longer
	// the one running: under init: systemd, docker.service restarts a
	// dockerd that died, and the new one answers the API as if nothing
	// happened. The reply's Error says which process is gone.
	OpDockerCheck Op = "docker-check"
	OpSysctl      Op = "sysctl"     // write Value to /proc/sys/<Arg with dots as slashes>
	OpWriteLoop   Op = "write-loop" // start a writer that rewrites and fsyncs a file at Arg for Value seconds (empty: forever)
)

// Command is one host → guest line.
type Command struct {
	V     int    `json:"v"`
	ID    uint64 `json:"id"`
	Op    Op     `json:"op"`
	Arg   string `json:"arg,omitempty"`
	Value string `json:"value,omitempty"`
}

// ErrVersion reports a line from a peer that speaks another protocol version.
var ErrVersion = errors.New("agent protocol version mismatch")

// messageRules lists, per type, which check a message of that type must pass.
var messageRules = map[Type]func(Message) error{
	TypeHello: func(m Message) error { return need(m.Release != "", "hello without release") },
	TypeState: func(m Message) error {
		if !knownState(m.State) {
			return fmt.Errorf("unknown state %q", m.State)
		}
		return nil
	},
	TypeHeartbeat:  func(m Message) error { return nil },
	TypeLog:        func(m Message) error { return need(m.Source != "", "log without source") },
	TypeReply:      func(m Message) error { return need(m.ID != 0, "reply without id") },
	TypeShutdown:   func(m Message) error { return nil },
	TypeDockerExit: func(m Message) error { return need(m.Reason != "", "docker-exit without reason") },
}

var states = []State{StateBooted, StateModulesLoaded, StateRootMounted, StateScratchReady,
	StateDockerStarting, StateDockerReady, StateUnsupported, StateError}

func knownState(s State) bool {
	for _, k := range states {
		if k == s {
			return true
		}
	}
	return false
}

func need(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(msg)
}

// DecodeMessage parses and validates one guest → host line.
func DecodeMessage(line []byte) (Message, error) {
	var m Message
	if err := decodeStrict(line, &m); err != nil {
		return Message{}, fmt.Errorf("decode agent message: %w", err)
	}
	if m.V != Version {
		return Message{}, fmt.Errorf("decode agent message: got v%d, want v%d: %w", m.V, Version, ErrVersion)
	}
	rule, ok := messageRules[m.Type]
	if !ok {
		return Message{}, fmt.Errorf("decode agent message: unknown type %q", m.Type)
	}
	if err := rule(m); err != nil {
		return Message{}, fmt.Errorf("decode agent message %s: %w", m.Type, err)
	}
	return m, nil
}

// commandRules validates each command's arguments.
var commandRules = map[Op]func(Command) error{
	OpShutdown: func(c Command) error { return nil },
	OpSysrq: func(c Command) error {
		if len(c.Arg) != 1 || !isAlnum(c.Arg[0]) {
			return fmt.Errorf("sysrq wants one letter or digit, got %q", c.Arg)
		}
		return nil
	},
	OpFreeze:      func(c Command) error { return absPath(c.Arg) },
	OpThaw:        func(c Command) error { return absPath(c.Arg) },
	OpKillDockerd: func(c Command) error { return nil },
	OpDockerCheck: func(c Command) error { return nil },
	OpSysctl: func(c Command) error {
		if c.Arg == "" || strings.Contains(c.Arg, "..") || strings.HasPrefix(c.Arg, ".") {
			return fmt.Errorf("bad sysctl key %q", c.Arg)
		}
		for i := 0; i < len(c.Arg); i++ {
			if b := c.Arg[i]; !isAlnum(b) && b != '.' && b != '_' && b != '-' {
				return fmt.Errorf("bad sysctl key %q", c.Arg)
			}
		}
		if c.Value == "" || strings.ContainsAny(c.Value, "\n\x00") || len(c.Value) > 256 {
			return fmt.Errorf("bad sysctl value %q", c.Value)
		}
		return nil
	},
	OpWriteLoop: func(c Command) error {
		if c.Value != "" {
			if n, err := strconv.Atoi(c.Value); err != nil || n < 1 || n > 86400 {
				return fmt.Errorf("write-loop wants a duration of 1-86400 seconds, got %q", c.Value)
			}
		}
		return absPath(c.Arg)
	},
}

func isAlnum(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}

func absPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\n\x00") || len(p) > 4096 {
		return fmt.Errorf("want an absolute path, got %q", p)
	}
	return nil
}

// Validate checks a command's op and arguments.
func (c Command) Validate() error {
	if c.V != Version {
		return fmt.Errorf("command v%d, want v%d: %w", c.V, Version, ErrVersion)
	}
	if c.ID == 0 {
		return errors.New("command without id")
	}
	rule, ok := commandRules[c.Op]
	if !ok {
		return fmt.Errorf("unknown command %q", c.Op)
	}
	if err := rule(c); err != nil {
		return fmt.Errorf("command %s: %w", c.Op, err)
	}
	return nil
}

// DecodeCommand parses and validates one host → guest line.
func DecodeCommand(line []byte) (Command, error) {
	var c Command
	if err := decodeStrict(line, &c); err != nil {
		return Command{}, fmt.Errorf("decode agent command: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Command{}, fmt.Errorf("decode agent command: %w", err)
	}
	return c, nil
}

func decodeStrict(line []byte, v any) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return errors.New("not a json object")
	}
	if len(line) > MaxLine {
		return fmt.Errorf("line of %d bytes exceeds %d", len(line), MaxLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after json object")
	}
	return nil
}

// Encode renders v (a Message or Command) as one line, newline included.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode agent line: %w", err)
	}
	return append(b, '\n'), nil
}
