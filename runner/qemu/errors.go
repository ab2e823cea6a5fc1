package qemu

import (
	"fmt"
	"strings"

	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// BootError: the guest did not reach docker-ready — the kernel died, the
// agent reported an error, or a deadline passed. It is the cell's fault.
type BootError struct {
	// Stage is the last agent state seen ("" if the agent never said hello).
	Stage string
	// Reason says what happened.
	Reason string
	// Exit is set when QEMU had already exited.
	Exit *Exit
	// ConsoleTail is the end of the serial console.
	ConsoleTail string
}

func (e *BootError) Error() string {
	s := "boot failed"
	if e.Stage != "" {
		s += " after " + e.Stage
	}
	s += ": " + e.Reason
	if e.Exit != nil {
		s += " (" + e.Exit.String() + ")"
	}
	return s
}

// InfraError: the harness or host failed (QEMU would not start, no free
// port, the forwarded port does not answer). Never the cell's fault.
type InfraError struct {
	Op     string
	Argv   []string
	Output string
	Err    error
}

func (e *InfraError) Error() string {
	s := e.Op
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		s += ": " + out
	}
	return s
}

func (e *InfraError) Unwrap() error { return e.Err }

func infraf(op string, err error, format string, args ...any) *InfraError {
	return &InfraError{Op: op, Err: err, Output: fmt.Sprintf(format, args...)}
}

// AgentError is the guest agent's answer that a command failed, as opposed
// to a command that never got an answer (channel closed, VM exited, ctx).
type AgentError struct {
	Op     agentproto.Op
	Reason string // the agent's words: data, never markup
}

func (e *AgentError) Error() string { return fmt.Sprintf("agent command %s: %s", e.Op, e.Reason) }
