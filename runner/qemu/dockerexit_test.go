package qemu

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// A dockerd that exited after docker-ready fails Ping even when systemd
// restarted it: the guest's report is the evidence, the first exit named.
func TestDockerExitsFailPing(t *testing.T) {
	v := &VM{changed: make(chan struct{})}
	if err := dockerExitError(v.DockerExits()); err != nil {
		t.Fatalf("no exit reported: %v", err)
	}
	for i, reason := range []string{
		"dockerd (pid 612) exited; docker.service: Restart=always NRestarts=0 Result=success",
		"dockerd (pid 1740) exited; docker.service: Restart=always NRestarts=1 Result=success",
	} {
		v.handle(agentproto.Message{V: agentproto.Version, Type: agentproto.TypeDockerExit, UptimeMS: int64(60000 + 1000*i), Reason: reason})
	}
	err := dockerExitError(v.DockerExits())
	if err == nil {
		t.Fatal("two exits reported, Ping's error is nil")
	}
	for _, want := range []string{"its init restarted it", "containers it ran were lost", "at 60.0s of guest uptime: dockerd (pid 612) exited", "(and 1 more exit(s))"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// The agent's answer that the ready dockerd is gone fails Ping; a command
// that got no answer leaves it to the API ping.
func TestDockerCheckError(t *testing.T) {
	if err := dockerCheckError(nil); err != nil {
		t.Errorf("dockerd unchanged: %v", err)
	}
	if err := dockerCheckError(errors.New("agent command docker-check: vm exited before the reply")); err != nil {
		t.Errorf("no answer decided Ping: %v", err)
	}
	gone := &AgentError{Op: agentproto.OpDockerCheck, Reason: "dockerd (pid 213) that became ready is gone; docker.service runs pid 402 now: Restart=always NRestarts=1 Result=success"}
	err := dockerCheckError(fmt.Errorf("wrapped: %w", gone))
	if err == nil || !strings.Contains(err.Error(), "its init restarted it") || !strings.Contains(err.Error(), "pid 213") {
		t.Errorf("agent said the ready dockerd is gone; Ping error %v", err)
	}
}
