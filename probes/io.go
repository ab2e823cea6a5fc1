package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// In-container paths of the IO probe.
const (
	ioVolumeMount = "/data/vol"
	ioLayerDir    = "/data/layer"
	ioJournal     = ioVolumeMount + "/journal.jsonl"
	ioRecords     = ioVolumeMount + "/records.jsonl"
)

// watchdog is the outside deadline for a probe container that should run for d.
func watchdog(d time.Duration) time.Duration { return 3*d + 90*time.Second }

// runIO runs the IO workload in one container: blocks in its writable layer
// (the storage driver under test) and in a volume, copy-up and whiteouts of
// the image's lower files, then a full verification.
func runIO(ctx context.Context, s *session, r *ProbeResult) error {
	vol, err := s.createVolume(ctx, IO, "io")
	if err != nil {
		return err
	}
	id, err := s.create(ctx, IO, containerSpec{
		role: "io",
		cmd: []string{"io",
			"-dirs", ioLayerDir + "," + ioVolumeMount + "/io",
			"-lower", "/lower",
			"-journal", ioJournal,
			"-records", ioRecords,
			"-verify-existing",
			"-duration", s.opts.Duration.String(),
			"-intensity", strconv.Itoa(s.opts.Intensity),
			"-seed", strconv.FormatUint(seedOf(s.runID), 10),
		},
		mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: ioVolumeMount}},
	})
	if err != nil {
		return err
	}
	if s.opts.Keep {
		s.keep(id)
		s.keep(vol)
		r.Kept = map[string]string{"container": id, "volume": vol}
	}
	o, err := s.runToExit(ctx, IO, id, watchdog(s.opts.Duration))
	if err != nil {
		return err
	}
	return judge(IO, o, r, ErrIntegrity)
}

// judge turns a probe container's outcome into r and an error: exit 1 with
// mismatches is failKind, a watchdog kill or other failure is ErrProbe.
func judge(probe string, o outcome, r *ProbeResult, failKind error) error {
	ok, serr := summarise(o.records, r, "")
	switch {
	case o.watchdog:
		return &ProbeError{Probe: probe, Kind: ErrProbe, Detail: "watchdog killed the probe container"}
	case len(r.Mismatches) > 0 || (o.exit == 1 && r.Metrics["mismatches"] > 0):
		return &ProbeError{Probe: probe, Kind: failKind, Detail: fmt.Sprintf("%d mismatching blocks", max(len(r.Mismatches), int(r.Metrics["mismatches"])))}
	case o.exit != 0:
		return &ProbeError{Probe: probe, Kind: ErrProbe, Detail: fmt.Sprintf("exit status %d: %s", o.exit, lastLine(o.stderr))}
	case serr != nil:
		return &ProbeError{Probe: probe, Kind: ErrProbe, Detail: "the probe wrote no summary record"}
	case !ok:
		return &ProbeError{Probe: probe, Kind: ErrProbe, Detail: "summary not ok"}
	}
	r.OK = true
	return nil
}

// VerifyOptions configure VerifyIO.
type VerifyOptions struct {
	// RunID is the run whose IO probe was kept (Options.Keep).
	RunID string
	// Container is the kept IO container; when set it is started again and
	// verifies the journal's promises in its writable layer and its volume.
	Container string
	// Volume is the kept IO volume, used when Container is empty: a fresh
	// container verifies the promises under the volume only.
	Volume      string
	RecordsPath string
	Workdir     string
	ProbeBinary string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// VerifyIO re-verifies what a kept IO probe promised, e.g. after a power cut:
// every block acknowledged by fsync must be there. Mismatches come back in
// the result; a promised block that is lost or wrong is ErrDataLoss.
func VerifyIO(ctx context.Context, cli client.APIClient, opts VerifyOptions) (*ProbeResult, error) {
	o := Options{Probes: []string{IO}, RunID: opts.RunID, RecordsPath: opts.RecordsPath, Workdir: opts.Workdir, ProbeBinary: opts.ProbeBinary, Keep: true, Log: opts.Log}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := newSession(ctx, cli, o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	r := &ProbeResult{Name: IO + "-verify", Metrics: map[string]float64{}}
	if opts.Container == "" && opts.Volume == "" {
		c, v, err := KeptIO(ctx, cli, opts.RunID)
		if err != nil {
			return r, err
		}
		opts.Container, opts.Volume = c, v
	}
	id := opts.Container
	if id == "" {
		id, err = s.create(ctx, IO, containerSpec{
			role:   "io-verify",
			cmd:    []string{"verify", "-journal", ioJournal, "-prefix", ioVolumeMount},
			mounts: []mount.Mount{{Type: mount.TypeVolume, Source: opts.Volume, Target: ioVolumeMount}},
		})
		if err != nil {
			return nil, err
		}
		defer s.removeContainer(id)
	}
	out, err := s.runToExit(ctx, IO, id, watchdog(time.Minute))
	if err != nil {
		return r, err
	}
	err = judge(IO, out, r, ErrDataLoss)
	r.OK = err == nil
	r.Err = err
	return r, err
}

// IOJournal is where the kept IO probe's promise journal is, relative to
// the Docker root (/var/lib/docker) of the machine that ran it.
func IOJournal(runID string) string { return IODockerPath(runID, ioJournal) }

// IODockerPath maps a path the IO probe named inside its volume (as its
// journal and mismatches do: /data/vol/...) to the path relative to the
// Docker root; paths outside the volume (the container's layer) map to "".
func IODockerPath(runID, p string) string {
	rest, ok := strings.CutPrefix(p, ioVolumeMount+"/")
	if !ok {
		return ""
	}
	return "/volumes/mxp-" + runID + "-io/_data/" + rest
}

// ErrKeptGone says the IO probe that Options.Keep left in place is no longer
// known to the daemon (neither its container nor its volume), e.g. because
// the daemon's own state did not survive a power cut.
var ErrKeptGone = errors.New("kept IO probe gone")

// KeptIO finds the container and volume of run runID's kept IO probe by
// their labels. The container is "" when only the volume is left; when
// neither is, the error wraps ErrKeptGone and ErrDataLoss: the volume held
// the probe's promise journal.
func KeptIO(ctx context.Context, cli client.APIClient, runID string) (ctr, vol string, err error) {
	f := runFilter(runID)
	f.Add("label", LabelRole+"=io")
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return "", "", classify(IO, "list kept containers", err)
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return "", "", classify(IO, "list kept volumes", err)
	}
	if len(cs) > 0 {
		ctr = cs[0].ID
	}
	if len(vs.Volumes) > 0 {
		vol = vs.Volumes[0].Name
	}
	if ctr == "" && vol == "" {
		return "", "", &ProbeError{Probe: IO, Kind: ErrDataLoss, Detail: "run " + runID + ": neither the IO container nor its volume (with the promise journal) is known to dockerd any more", Err: ErrKeptGone}
	}
	return ctr, vol, nil
}

func lastLine(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

func seedOf(runID string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(runID); i++ {
		h = (h ^ uint64(runID[i])) * 1099511628211
	}
	return h
}
