package proc_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
)

func TestRunReturnsOutput(t *testing.T) {
	out, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", "echo out; echo err >&2"}})
	if err != nil || out != "out\nerr\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
}

func TestFailureNamesCommandStatusAndOutput(t *testing.T) {
	argv := []string{"sh", "-c", "echo out; echo err >&2; exit 3"}
	out, err := proc.Run(context.Background(), proc.Cmd{Argv: argv})
	var pe *proc.Error
	if !errors.As(err, &pe) || pe.ExitCode != 3 || pe.Output != "out\nerr\n" || out != pe.Output {
		t.Fatalf("error %#v, output %q", err, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("%v does not unwrap to *exec.ExitError", err)
	}
	want := "sh -c 'echo out; echo err >&2; exit 3': exit 3: exit status 3\nout\nerr"
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
}

func TestStderrOnlyWhenStdoutTaken(t *testing.T) {
	var stdout strings.Builder
	_, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", "echo data; echo complaint >&2; exit 1"}, Stdout: &stdout})
	var pe *proc.Error
	if !errors.As(err, &pe) || pe.Output != "complaint\n" || stdout.String() != "data\n" {
		t.Fatalf("error %#v, stdout %q", err, stdout.String())
	}
}

func TestOutputKeepsStdoutWhole(t *testing.T) {
	out, err := proc.Output(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", "head -c 100000 /dev/zero; echo complaint >&2; exit 2"}, Tail: 100})
	var pe *proc.Error
	if len(out) != 100000 || !errors.As(err, &pe) || pe.Output != "complaint\n" {
		t.Fatalf("Output = %d bytes, %#v", len(out), err)
	}
}

func TestOutputIsBounded(t *testing.T) {
	// 100 KiB of output, the last line says where it ended.
	script := "i=0; while [ $i -lt 1600 ]; do printf '%063d\\n' $i; i=$((i+1)); done; echo THE-END"
	var live strings.Builder
	out, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", script}, Tail: 1000, Out: &live})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1000 || !strings.HasSuffix(out, "THE-END\n") {
		t.Errorf("kept %d bytes ending %q, want the last 1000", len(out), out[max(0, len(out)-20):])
	}
	if live.Len() != 1600*64+len("THE-END\n") {
		t.Errorf("Out saw %d bytes, want all of them", live.Len())
	}
}

func TestMessageShowsTheOutputTail(t *testing.T) {
	_, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x; echo; echo last; exit 1"}})
	if msg := err.Error(); len(msg) > 2100 || !strings.HasSuffix(msg, "x\nlast") || !strings.Contains(msg, "\n...x") {
		t.Errorf("message of %d bytes: %.80q...%q", len(msg), msg, msg[len(msg)-20:])
	}
}

func TestMessageFoldsAptOptions(t *testing.T) {
	e := &proc.Error{Argv: []string{"apt-get", "-o", "A=1", "-o", "B=2", "-o", "C=3", "install", "it's"}, ExitCode: 100, Err: errors.New("exit status 100")}
	if got, want := e.Error(), `apt-get [3 -o options] install 'it'\''s': exit 100: exit status 100`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestQuoteRoundTrips(t *testing.T) {
	argv := []string{"qemu", "-append", "console=ttyS0 panic=-1", "it's", "", "a,b", "$HOME"}
	q := proc.Quote(argv)
	out, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"sh", "-c", "for a in " + q + "; do printf '%s\\n' \"$a\"; done"}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if strings.Join(got, "|") != strings.Join(argv, "|") {
		t.Errorf("sh read %q back as %q", q, got)
	}
}

func TestCannotStart(t *testing.T) {
	_, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"matrixctl-no-such-program"}})
	var pe *proc.Error
	if !errors.As(err, &pe) || pe.ExitCode != -1 || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("error %#v", err)
	}
	if _, err := proc.Run(context.Background(), proc.Cmd{}); err == nil {
		t.Error("empty argv: no error")
	}
}

// killedBy reports the signal that ended the child behind err.
func killedBy(err error) syscall.Signal {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		return 0
	}
	return ws.Signal()
}

// groupGone waits briefly for every process of group pgid to be gone.
func groupGone(pgid int) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

func TestContextKillsTheWholeGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The shell leaves a grandchild behind that holds the output pipe.
	p, err := proc.Start(ctx, proc.Cmd{Argv: []string{"sh", "-c", "sleep 30 & sleep 30"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Wait()
	var pe *proc.Error
	if !errors.As(err, &pe) || pe.ExitCode != -1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want *Error wrapping deadline exceeded", err)
	}
	if sig := killedBy(err); sig != syscall.SIGKILL {
		t.Errorf("ended by signal %v, want SIGKILL", sig)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Wait took %s: the grandchild was not killed with the group", d)
	}
	if !groupGone(p.PID()) {
		t.Errorf("process group %d still has members", p.PID())
	}
	if !strings.Contains(err.Error(), "sh -c 'sleep 30 & sleep 30': exit -1: context deadline exceeded (signal: killed)") {
		t.Errorf("message %q", err)
	}
}

func TestKillAndReap(t *testing.T) {
	p, err := proc.Start(context.Background(), proc.Cmd{Argv: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if sig := killedBy(p.Wait()); sig != syscall.SIGKILL {
		t.Errorf("ended by signal %v, want SIGKILL", sig)
	}
	if !errors.Is(p.Wait(), p.Wait()) {
		t.Error("a second Wait returned something else")
	}
	if err := p.Signal(syscall.SIGCONT); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal after exit: %v, want os.ErrProcessDone", err)
	}
}

func TestReapedWithoutWait(t *testing.T) {
	p, err := proc.Start(context.Background(), proc.Cmd{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	// A zombie would keep its /proc entry until reaped.
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/stat"); err == nil && strings.Contains(string(b), ") Z ") {
		t.Errorf("pid %d is a zombie after Done", p.PID())
	}
}
