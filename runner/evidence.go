package runner

import (
	"context"
	"io"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/probes"
)

// Prober runs the selected probes against a docker host. Adapters wrap the
// probes package; tests script it.
type Prober interface {
	RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error)
}

// ProbeRequest says which probes to run where and for how long.
type ProbeRequest struct {
	DockerHost string
	Probes     []string
	Duration   time.Duration
	// RecordsPath is the host file that receives the probes' JSON-lines
	// records (probes.jsonl), appended and flushed per record so that what a
	// killed run wrote can be read back.
	RecordsPath string
	// KeepIO leaves the IO probe's container and volume in place, named by
	// RunID, for a verification after a power cut (CrashVerifier).
	KeepIO bool
	RunID  string
	// Started, when set, is called as each probe's container starts.
	Started func(probe string)
	// Sequential runs the probes one after the other instead of all at
	// once (the default).
	Sequential bool
}

// Mode names how req's probes share the daemon, for results.Run.ProbeMode.
func (req ProbeRequest) Mode() string {
	if req.Sequential {
		return probes.ModeSequential
	}
	return probes.ModeConcurrent
}

// CrashVerifier is a Prober that can re-verify, on a machine booted again
// after a power cut, what a kept IO probe had promised (ProbeRequest.KeepIO).
type CrashVerifier interface {
	VerifyAfterCrash(ctx context.Context, req VerifyRequest) (ProbeReport, error)
}

// VerifyRequest names the kept IO probe to re-verify and where.
type VerifyRequest struct {
	DockerHost string
	// RunID is ProbeRequest.RunID of the run that kept the probe.
	RunID string
	// RecordsPath receives the verification's records.
	RecordsPath string
}

// ProbeReport is what the probes proved.
type ProbeReport struct {
	Probes []results.Probe
	// Lost lists integrity failures of promised data: blocks that were
	// written and verified wrong or missing (file, offset, expected, found).
	Lost []string
	// Corrupt lists data the probes read back wrong without it being a
	// promise that was broken (checksums that do not match what was written).
	Corrupt []string
	// DaemonErrs lists conclusive failures of the Docker daemon seen by the probes.
	DaemonErrs []string
	// FailedOps names operations that failed with an error (e.g. "io: fsync
	// /data/f3: input/output error").
	FailedOps []string
}

// ConsoleScanner analyses console bytes as they arrive. The console
// package's scanner is adapted to it; Close returns every finding.
type ConsoleScanner interface {
	io.Writer
	Close() []results.Finding
}

// NewConsoleScanner makes a scanner that calls onFinding for every finding as
// soon as it is recognised.
type NewConsoleScanner func(onFinding func(results.Finding)) ConsoleScanner

// Checker checks a scratch image from the host (runner/fscheck).
type Checker interface {
	Check(ctx context.Context, s Scratch) (*results.Checker, error)
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context, s Scratch) (*results.Checker, error)

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, s Scratch) (*results.Checker, error) {
	return f(ctx, s)
}
