// Package runner turns a plan into verdicts: for every runnable cell and
// repeat it prepares images, boots a machine through a Provider, waits for
// dockerd, runs the probes for the soak duration while the console is
// analysed live, shuts the machine down, checks its scratch filesystem from
// the host and judges the evidence into one verdict (see Judge).
//
// Every run is journalled (journal.jsonl, fsync per record) and every file in
// the results directory is written atomically, so a controller killed with
// SIGKILL can be resumed: finished runs are kept, runs that were in flight
// are run again, and the machines they left behind are killed.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// Provider boots machines for cells. Implementations: runner/qemu (the
// default), runner/vagrant and runner/local (the host's own dockerd).
type Provider interface {
	// Name is recorded in results.json ("qemu", "local").
	Name() string
	// Prepare fetches or builds what the cell boots (kernel, rootfs) and
	// decides the cell's pending kernel checks. It returns an
	// *UnsupportedError when the cell cannot run, an *InfraError when the
	// harness or host failed.
	Prepare(ctx context.Context, req Request) error
	// Boot starts a machine for the cell. Console bytes go to req.Console
	// while the machine runs.
	Boot(ctx context.Context, req Request) (Machine, error)
}

// Rebooter is a Provider that can boot a cell again on the scratch disk of
// a machine of the same run whose power was cut (the crash-consistency
// check): the new machine mounts the filesystem it finds there instead of
// making a new one.
type Rebooter interface {
	// Reboot boots a machine for req (a new artifact directory) on prev's
	// scratch disk. prev has stopped; Reboot takes its scratch disk over.
	Reboot(ctx context.Context, req Request, prev Machine) (Machine, error)
}

// PackageChanger is a Provider that builds the cell's host itself and
// applies the cell's package changes (matrix Settings.Packages) to it. A
// cell with package changes is unsupported on other providers: a Vagrant
// box or the local host is what it is.
type PackageChanger interface {
	AppliesPackageChanges()
}

// Request describes one run of a cell.
type Request struct {
	Cell   matrix.Cell
	Repeat int
	// Dir is the run's artifact directory (exists); a provider writes its
	// own artifacts there (qemu-cmdline.txt, agent.log, dockerd.log) and
	// reports their names in Machine.Artifacts.
	Dir string
	// Console receives the machine's console bytes live. Never nil.
	Console io.Writer
}

// Machine is one booted machine.
type Machine interface {
	// WaitDocker blocks until dockerd in the machine answers and returns the
	// DOCKER_HOST to reach it (tcp://127.0.0.1:port or unix:///...).
	WaitDocker(ctx context.Context) (string, error)
	// Ping asks dockerd whether it still answers, and fails too when the
	// dockerd the run started exited meanwhile, even if its init restarted
	// it (the containers it ran are gone).
	Ping(ctx context.Context) error
	// Exited is closed, after Exit is valid, when the machine stopped on its
	// own or was stopped.
	Exited() <-chan struct{}
	// Exit says why the machine stopped; valid after Exited is closed.
	Exit() Exit
	// Shutdown stops the machine cleanly (sync, unmount, power off).
	Shutdown(ctx context.Context) error
	// Kill stops the machine at once and waits for it.
	Kill() error
	// Scratch is the disk image the guest's docker data lives on and its
	// filesystem, for the host-side checker. Empty Path: nothing to check.
	Scratch() Scratch
	// Process identifies the host process behind the machine, so a
	// resumed controller can kill it if this controller dies. Pid 0: none.
	Process() Process
	// Artifacts maps artifact names to file names inside Request.Dir.
	Artifacts() map[string]string
	// Info returns facts learned while running (kernel release, docker version).
	Info() Info
	// Close releases everything the machine holds (kills it if still running).
	Close() error
}

// ArtifactWriter is a Machine that writes artifacts into the run directory
// itself (console, agent and dockerd logs) and reports the first write that
// failed, e.g. on a full results disk: a run whose evidence could not be
// kept is an infra-error, retried, not a verdict on partial evidence.
type ArtifactWriter interface {
	ArtifactErr() error
}

// Scratch names a scratch disk image.
type Scratch struct {
	Path string // image file
	FS   string // ext4 | xfs | btrfs | thin (devicemapper metadata)
}

// Process identifies a host process across controller restarts: a pid alone
// could have been reused, so the process's start time (clock ticks since
// boot, field 22 of /proc/pid/stat) is kept with it.
type Process struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_ticks"`
	// Group is true when Pid leads its own process group (kill -pgid).
	Group bool `json:"group,omitempty"`
}

// Info are facts the machine reported.
type Info struct {
	KernelRelease string
	DockerServer  string
	// NoConsole is true for machines that have no console at all (local).
	NoConsole bool
	// Host is evidence about the guest as a Docker host (nil: unknown).
	Host *results.Host
}

// ExitReason says why a machine stopped.
type ExitReason string

// Exit reasons.
const (
	// ExitRunning: the machine has not stopped.
	ExitRunning ExitReason = ""
	// ExitShutdown: stopped by Shutdown.
	ExitShutdown ExitReason = "shutdown"
	// ExitKilled: stopped by Kill or Close.
	ExitKilled ExitReason = "killed"
	// ExitCrashed: the guest stopped by itself (with panic=-1 and
	// -no-reboot a VM exits only when the kernel panicked).
	ExitCrashed ExitReason = "crashed"
	// ExitHang: the provider's watchdog saw no progress (silent console,
	// no agent heartbeat).
	ExitHang ExitReason = "hang"
	// ExitDockerDied: the guest agent saw dockerd exit.
	ExitDockerDied ExitReason = "docker-died"
	// ExitInfra: the host side failed (QEMU died with an error of its own).
	ExitInfra ExitReason = "infra"
)

// Exit is the reason a machine stopped and its detail.
type Exit struct {
	Reason ExitReason
	Detail string
}

// UnsupportedError says a cell cannot run here, with the reason.
type UnsupportedError struct{ Reason string }

func (e *UnsupportedError) Error() string { return "unsupported: " + e.Reason }

// InfraError is a failure of the harness or host, not of the cell. Runs that
// end in one are retried.
type InfraError struct {
	Op  string
	Err error
}

func (e *InfraError) Error() string { return fmt.Sprintf("infrastructure: %s: %v", e.Op, e.Err) }
func (e *InfraError) Unwrap() error { return e.Err }

// Infra wraps err as an *InfraError for op (nil stays nil).
func Infra(op string, err error) error {
	if err == nil {
		return nil
	}
	return &InfraError{Op: op, Err: err}
}

// IsInfra reports whether err is or wraps an *InfraError.
func IsInfra(err error) bool {
	var ie *InfraError
	return errors.As(err, &ie)
}

// phase names, also used for results.Phase.Name and progress.
const (
	PhasePrepare = "prepare"
	PhaseBoot    = "boot"
	PhaseDocker  = "docker-ready"
	PhaseProbes  = "probes"
	PhaseStop    = "shutdown"
	PhaseCheck   = "check"
	// The crash-consistency check: the power cut while the IO probe
	// writes, the boot on the same scratch disk up to dockerd, and the
	// re-verification of what the probe had promised.
	PhasePowerCut = "power-cut"
	// PhaseCorrupt: the flip-data fault's writes, clean shutdown and the
	// corruption of a promised block on the stopped scratch image.
	PhaseCorrupt = "corrupt"
	PhaseReboot  = "reboot"
	PhaseVerify  = "verify"
)

// defaultShutdownTimeout bounds a clean shutdown before the machine is killed.
const defaultShutdownTimeout = 60 * time.Second

// ConsoleLogWriter is implemented by providers that write console.log into
// the run directory themselves; the runner then only analyses the stream.
type ConsoleLogWriter interface {
	WritesConsoleLog() bool
}

// ExistingArtifacts is the part of files (artifact name → file relative to
// dir) that exists in dir: what a Machine's Artifacts returns when its
// provider writes a fixed set of files into the run directory.
func ExistingArtifacts(dir string, files map[string]string) map[string]string {
	out := map[string]string{}
	for name, file := range files {
		if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
			out[name] = file
		}
	}
	return out
}
