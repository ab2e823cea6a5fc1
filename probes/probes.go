// Package probes drives the probe workloads against a Docker daemon through
// the Engine API (client.APIClient, so a fake can stand in): it loads the
// probe image (built locally, no registry), runs the io, net and churn probes
// in labelled containers with an outside watchdog — all at once by default
// (mixed load, as on a production host; Options.Sequential runs them one
// after the other) — streams their JSON-lines records (package record) into
// one host file as they arrive, each probe through its own writer, summarises
// each probe, and removes everything it created, also when ctx is cancelled.
//
// Error semantics of Run and of each ProbeResult.Err:
//
//	nil                              the probe passed
//	errors.Is(err, ErrIntegrity)     data read back differs from what was written (fs-corruption)
//	errors.Is(err, ErrDataLoss)      data promised by fsync is missing or wrong after a crash (data-loss)
//	errors.Is(err, ErrDaemon)        the daemon failed or refused an operation (docker-failure)
//	errors.Is(err, ErrProbe)         the workload failed: connection errors, leaks, watchdog (probe-failure)
//	any other error                  inconclusive: the harness or the client connection broke (infra-error)
//
// The runner sorts these into a run's evidence (runner/probes_adapter.go).
//
// Every container, volume, network and churn image carries the labels
// LabelProbe=1 and LabelRun=<run id>; Cleanup removes them by label.
package probes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/probes/record"
)

// Labels set on everything the probes create.
const (
	LabelProbe = "matrixctl.probe"
	LabelRun   = "matrixctl.probe.run"
	LabelRole  = "matrixctl.probe.role"
)

// Names of the probes.
const (
	IO    = "io"
	Net   = "net"
	Churn = "churn"
)

// All lists every probe in the order Run reports them (and runs them
// under Options.Sequential).
func All() []string { return []string{IO, Net, Churn} }

// The conclusive failure classes; see the package doc.
var (
	ErrIntegrity = errors.New("integrity failure")
	ErrDataLoss  = errors.New("promised data lost")
	ErrDaemon    = errors.New("docker daemon failure")
	ErrProbe     = errors.New("probe failure")
)

// ProbeError is a conclusive failure of one probe. Kind is one of the
// sentinels above, and errors.Is(err, Kind) holds.
type ProbeError struct {
	Probe  string
	Kind   error
	Detail string
	Err    error
}

func (e *ProbeError) Error() string {
	msg := e.Probe + ": " + e.Kind.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is matches the failure class.
func (e *ProbeError) Is(target error) bool { return target == e.Kind }

func (e *ProbeError) Unwrap() error { return e.Err }

// Options configure Run.
type Options struct {
	// Probes to run, from All(); empty runs all of them.
	Probes []string
	// Duration is how long each probe's workload runs (default 5s).
	Duration time.Duration
	// Intensity scales sizes, counts and parallelism, 1-10 (default 1).
	Intensity int
	// RecordsPath is the host file that receives every record (JSON lines,
	// appended, fsynced per record). Empty keeps records in memory only.
	RecordsPath string
	// Workdir holds build output (the probe binary when it must be built).
	Workdir string
	// ProbeBinary is the static probe binary; empty finds or builds it with internal/selfbuild.
	ProbeBinary string
	// RunID names this run in labels and resource names; empty picks a random one.
	RunID string
	// Keep leaves the IO probe's container and volume in place (for
	// VerifyIO after a power cut); call Cleanup when done with them.
	Keep bool
	// Sequential runs the probes one after the other, in the order of
	// Probes, instead of all at once (the default: IO, network and churn
	// load together, as on a production host).
	Sequential bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Started, when set, is called each time a probe container starts
	// (with the probe's name), e.g. to cut a VM's power while the IO probe
	// writes. It must not block; probes running concurrently may call it
	// at the same time.
	Started func(probe string)
}

// The modes of a Run (Result.Mode, results.json's probe_mode).
const (
	ModeConcurrent = "concurrent"
	ModeSequential = "sequential"
)

func (o Options) mode() string {
	if o.Sequential {
		return ModeSequential
	}
	return ModeConcurrent
}

// Result summarises a Run.
type Result struct {
	RunID string
	// Image is the probe image's tag.
	Image string
	// Mode is ModeConcurrent or ModeSequential: how the probes shared the daemon.
	Mode   string
	Probes []ProbeResult
	// Leaked lists resources still labelled with the run after cleanup.
	Leaked []string
}

// ProbeResult summarises one probe.
type ProbeResult struct {
	Name       string
	OK         bool
	Metrics    map[string]float64
	Errors     []string
	Mismatches []record.Mismatch
	// Err is nil when OK, else classified as in the package doc.
	Err error
	// Kept names resources left in place by Options.Keep (container and volume IDs/names).
	Kept map[string]string
	// Started and Finished bound the probe's run, so overlapping probes
	// (the concurrent mode) can be told from sequential ones.
	Started, Finished time.Time
}

// Summary converts r for results.json.
func (r ProbeResult) Summary() results.Probe {
	p := results.Probe{Name: r.Name, OK: r.OK, Metrics: r.Metrics, Errors: slices.Clone(r.Errors)}
	for _, m := range r.Mismatches {
		p.Errors = append(p.Errors, fmt.Sprintf("mismatch %s at %d: %s: expected %s, found %s", m.File, m.Offset, m.Kind, m.Expected, m.Found))
	}
	if r.Err != nil && len(p.Errors) == 0 {
		p.Errors = append(p.Errors, r.Err.Error())
	}
	return p
}

// NewClient connects to the daemon named by the environment (DOCKER_HOST,
// default the local socket) with API version negotiation.
func NewClient() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

type probeFunc func(ctx context.Context, s *session, r *ProbeResult) error

func probeTable() map[string]probeFunc {
	return map[string]probeFunc{IO: runIO, Net: runNet, Churn: runChurn}
}

// Run runs the selected probes (concurrently unless opts.Sequential) and
// returns their results. The returned error joins the probes' errors (see
// the package doc); Result is non-nil whenever the probe image could be
// loaded.
func Run(ctx context.Context, cli client.APIClient, opts Options) (*Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := newSession(ctx, cli, opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	res := &Result{RunID: s.runID, Image: s.image, Mode: opts.mode()}
	var errs []error
	res.Probes, errs = s.runProbes(ctx, probeTable())
	s.cleanup(opts.Keep)
	if err := s.sink.writeErr(); err != nil {
		errs = append(errs, err)
	}
	res.Leaked = s.leaks(opts.Keep)
	if len(res.Leaked) > 0 {
		errs = append(errs, &ProbeError{Probe: "cleanup", Kind: ErrDaemon, Detail: fmt.Sprintf("left behind: %v", res.Leaked)})
	}
	return res, errors.Join(errs...)
}

// runProbes runs s.opts.Probes from table, each in its own goroutine
// against the same daemon for the same duration, or one after the other
// under Options.Sequential (stopping at a cancellation). The results are in
// the order of s.opts.Probes; each probe fills only its own ProbeResult and
// writes through its own record writer. A failing probe does not stop the
// others: each one's verdict evidence stands on its own.
func (s *session) runProbes(ctx context.Context, table map[string]probeFunc) ([]ProbeResult, []error) {
	results := make([]ProbeResult, len(s.opts.Probes))
	errs := make([]error, len(s.opts.Probes))
	if s.opts.Sequential {
		for i, name := range s.opts.Probes {
			results[i], errs[i] = s.runProbe(ctx, name, table[name])
			if ctx.Err() != nil {
				results, errs = results[:i+1], errs[:i+1]
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, name := range s.opts.Probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.runProbe(ctx, name, table[name])
			}()
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("probes: %w", ctx.Err()))
	}
	return results, slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// runProbe runs one probe, classifies its outcome and closes its records
// with the driver's summary.
func (s *session) runProbe(ctx context.Context, name string, fn probeFunc) (ProbeResult, error) {
	r := ProbeResult{Name: name, Metrics: map[string]float64{}, Started: time.Now()}
	s.logf("probe %s: start (run %s, %s, intensity %d, %s)", name, s.runID, s.opts.Duration, s.opts.Intensity, s.opts.mode())
	err := fn(ctx, s, &r)
	r.Finished = time.Now()
	if err == nil && !r.OK {
		err = &ProbeError{Probe: name, Kind: ErrProbe, Detail: "probe reported failure"}
	}
	r.OK = err == nil
	r.Err = err
	s.logf("probe %s: ok=%v err=%v (%s)", name, r.OK, err, r.Finished.Sub(r.Started).Round(time.Millisecond))
	msg := "pass"
	if err != nil {
		msg = err.Error()
	}
	s.writer(name).Write(record.Record{Kind: record.KindSummary, Source: record.SourceDriver, OK: &r.OK, Metrics: r.Metrics, Message: msg})
	return r, err
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Probes) == 0 {
		o.Probes = All()
	}
	for _, p := range o.Probes {
		if !slices.Contains(All(), p) {
			return o, fmt.Errorf("probes: unknown probe %q (want one of %v)", p, All())
		}
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Duration < time.Second {
		return o, fmt.Errorf("probes: duration %s: want at least 1s", o.Duration)
	}
	if o.Intensity == 0 {
		o.Intensity = 1
	}
	if o.Intensity < 1 || o.Intensity > 10 {
		return o, fmt.Errorf("probes: intensity %d: want 1-10", o.Intensity)
	}
	if o.RunID == "" {
		var b [4]byte
		rand.Read(b[:])
		o.RunID = hex.EncodeToString(b[:])
	}
	if o.Workdir == "" {
		o.Workdir = filepath.Join(os.TempDir(), "matrixctl-probes")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o, nil
}

// classify turns an Engine API error into a daemon failure, unless it is a
// transport problem, a cancellation or a request the harness got wrong
// (those stay infra errors).
func classify(probe, op string, err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		client.IsErrConnectionFailed(err), errors.As(err, &ue), errors.As(err, &ne),
		errors.Is(err, io.ErrUnexpectedEOF), cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("%s: %s: %w", probe, op, err)
	}
	return &ProbeError{Probe: probe, Kind: ErrDaemon, Detail: op, Err: err}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
