package probes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/matrixctl/matrixctl/internal/selfbuild"
	"github.com/matrixctl/matrixctl/probes/record"
)

// cleanupTimeout bounds each removal; cleanup uses a fresh context so it
// also runs after ctx was cancelled.
const cleanupTimeout = 30 * time.Second

// session is one Run: the client, the run's labels, the image and the
// record sink, plus what to remove at the end.
type session struct {
	cli   client.APIClient
	opts  Options
	runID string
	image string
	sink  *sink

	mu         sync.Mutex
	writers    map[string]*record.Writer // one per probe
	containers []string                  // LIFO
	volumes    []string
	networks   []string
	kept       map[string]bool
}

// sink is the combined records file plus the in-memory copy.
type sink struct {
	mu sync.Mutex
	f  *os.File
	// err is the first failed write: the records file is evidence, so a
	// run that could not keep it (a full results disk) says so.
	err error
}

func (k *sink) Write(b []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return len(b), nil
	}
	n, err := k.f.Write(b)
	if err != nil && k.err == nil {
		k.err = fmt.Errorf("probes: records file: %w", err)
	}
	return n, err
}

// writeErr is the first failed write of the records file.
func (k *sink) writeErr() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *sink) Sync() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	return k.f.Sync()
}

func newSession(ctx context.Context, cli client.APIClient, opts Options) (*session, error) {
	s := &session{cli: cli, opts: opts, runID: opts.RunID, sink: &sink{}, kept: map[string]bool{}}
	if opts.RecordsPath != "" {
		f, err := openRecords(opts.RecordsPath)
		if err != nil {
			return nil, err
		}
		s.sink.f = f
	}
	tag, err := EnsureImage(ctx, cli, opts.ProbeBinary, opts.Workdir)
	if err != nil {
		s.close()
		return nil, err
	}
	s.image = tag
	return s, nil
}

// openRecords opens the records file for appending.
func openRecords(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("probes: records: %w", err)
	}
	return f, nil
}

func (s *session) close() {
	if s.sink.f != nil {
		s.sink.f.Close()
	}
}

func (s *session) logf(format string, args ...any) {
	fmt.Fprintf(s.opts.Log, format+"\n", args...)
}

// writer is probe's own record writer: every record it writes is stamped
// with probe, also while other probes write to the same sink.
func (s *session) writer(probe string) *record.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writers == nil {
		s.writers = map[string]*record.Writer{}
	}
	w := s.writers[probe]
	if w == nil {
		w = record.NewWriter(s.sink, probe)
		s.writers[probe] = w
	}
	return w
}

func (s *session) labels(role string) map[string]string {
	return map[string]string{LabelProbe: "1", LabelRun: s.runID, LabelRole: role}
}

func (s *session) name(role string) string { return "mxp-" + s.runID + "-" + role }

// EnsureImage makes sure the probe image for the static binary at bin
// (found or built with internal/selfbuild when empty) is present in the daemon,
// loading it when it is not, and returns its tag. The tag is derived from the
// image content, so an up-to-date image is never loaded twice.
func EnsureImage(ctx context.Context, cli client.APIClient, bin, workdir string) (string, error) {
	if bin == "" {
		var err error
		bin, err = selfbuild.Path(ctx, selfbuild.Probe, workdir)
		if err != nil {
			return "", fmt.Errorf("probes: probe binary: %w", err)
		}
	}
	tarball, info, err := BuildImage(bin)
	if err != nil {
		return "", err
	}
	if _, err := cli.ImageInspect(ctx, info.Tag); err == nil {
		return info.Tag, nil
	} else if !cerrdefsNotFound(err) {
		return "", classify("image", "inspect "+info.Tag, err)
	}
	if err := loadImage(ctx, cli, tarball); err != nil {
		return "", classify("image", "load "+info.Tag, err)
	}
	return info.Tag, nil
}

type containerSpec struct {
	role    string
	cmd     []string
	mounts  []mount.Mount
	network string   // network mode / network name; "" = default bridge
	aliases []string // DNS aliases on a user-defined network
	ports   nat.PortMap
	image   string // default: the probe image
}

// create creates a labelled container and registers it for cleanup.
func (s *session) create(ctx context.Context, probe string, spec containerSpec) (string, error) {
	img := spec.image
	if img == "" {
		img = s.image
	}
	cfg := &container.Config{Image: img, Cmd: spec.cmd, Labels: s.labels(spec.role)}
	hc := &container.HostConfig{Mounts: spec.mounts, PortBindings: spec.ports}
	var nc *network.NetworkingConfig
	if spec.network != "" {
		hc.NetworkMode = container.NetworkMode(spec.network)
		if len(spec.aliases) > 0 {
			nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{spec.network: {Aliases: spec.aliases}}}
		}
	}
	if len(spec.ports) > 0 {
		cfg.ExposedPorts = nat.PortSet{}
		for p := range spec.ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	resp, err := s.cli.ContainerCreate(ctx, cfg, hc, nc, nil, s.name(spec.role))
	if err != nil {
		return "", classify(probe, "create container "+spec.role, err)
	}
	s.mu.Lock()
	s.containers = append(s.containers, resp.ID)
	s.mu.Unlock()
	return resp.ID, nil
}

func (s *session) createVolume(ctx context.Context, probe, role string) (string, error) {
	v, err := s.cli.VolumeCreate(ctx, volume.CreateOptions{Name: s.name(role), Labels: s.labels(role)})
	if err != nil {
		return "", classify(probe, "create volume", err)
	}
	s.mu.Lock()
	s.volumes = append(s.volumes, v.Name)
	s.mu.Unlock()
	return v.Name, nil
}

func (s *session) createNetwork(ctx context.Context, probe, role string) (string, error) {
	name := s.name(role)
	if _, err := s.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: s.labels(role)}); err != nil {
		return "", classify(probe, "create network", err)
	}
	s.mu.Lock()
	s.networks = append(s.networks, name)
	s.mu.Unlock()
	return name, nil
}

// outcome is what a probe container or exec produced.
type outcome struct {
	exit     int
	records  []record.Record
	stderr   string
	watchdog bool
}

// collector parses a probe's stdout into records as it arrives, forwards
// each to the sink and keeps it. Lines that are not records are data: they
// become error records quoting the line.
type collector struct {
	s       *session
	probe   string
	records []record.Record
}

func (c *collector) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), record.MaxLine)
	w := c.s.writer(c.probe)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec record.Record
		if err := json.Unmarshal(line, &rec); err != nil || rec.Validate() != nil {
			text := string(line)
			if len(text) > 200 {
				text = text[:200] + "..."
			}
			rec = record.Record{Kind: record.KindError, Probe: c.probe, Message: fmt.Sprintf("unparseable probe output: %q", text)}
		}
		w.Write(rec)
		c.records = append(c.records, rec)
	}
	io.Copy(io.Discard, r)
}

// runToExit starts a created container, streams its records and waits for
// it to exit. The watchdog kills it when it runs longer than timeout.
func (s *session) runToExit(ctx context.Context, probe, id string, timeout time.Duration) (outcome, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waitC, errC := s.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return outcome{}, classify(probe, "start container", err)
	}
	if s.opts.Started != nil {
		s.opts.Started(probe)
	}
	logs, err := s.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return outcome{}, classify(probe, "container logs", err)
	}
	defer logs.Close()
	out, stderr := s.demux(probe, logs)
	var o outcome
	select {
	case w := <-waitC:
		o.exit = int(w.StatusCode)
		if w.Error != nil {
			return o, &ProbeError{Probe: probe, Kind: ErrDaemon, Detail: "wait: " + w.Error.Message}
		}
	case err := <-errC:
		return o, classify(probe, "wait container", err)
	case <-wctx.Done():
		o.watchdog = ctx.Err() == nil
		kctx, kcancel := context.WithTimeout(context.Background(), cleanupTimeout)
		s.cli.ContainerKill(kctx, id, "KILL")
		kcancel()
		if ctx.Err() != nil {
			return o, fmt.Errorf("%s: %w", probe, ctx.Err())
		}
		select {
		case w := <-waitC:
			o.exit = int(w.StatusCode)
		case <-errC:
		case <-time.After(10 * time.Second):
		}
	}
	// the log stream ends when the container has exited
	select {
	case <-out.done:
	case <-time.After(10 * time.Second):
		logs.Close()
		<-out.done
	}
	o.records = out.c.records
	o.stderr = stderr.String()
	if o.watchdog {
		s.writer(probe).Error("watchdog", "container %s overran its %s deadline and was killed", id[:12], timeout)
	}
	return o, nil
}

type demuxed struct {
	c    *collector
	done chan struct{}
}

// demux splits a multiplexed log/attach stream: stdout into records, stderr
// into a bounded buffer.
func (s *session) demux(probe string, src io.Reader) (demuxed, *tailBuffer) {
	pr, pw := io.Pipe()
	d := demuxed{c: &collector{s: s, probe: probe}, done: make(chan struct{})}
	stderr := &tailBuffer{max: 8 << 10}
	parsed := make(chan struct{})
	go func() {
		d.c.consume(pr)
		close(parsed)
	}()
	go func() {
		_, err := stdcopy.StdCopy(pw, stderr, src)
		pw.CloseWithError(err)
		<-parsed
		close(d.done)
	}()
	return d, stderr
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// exec runs cmd in a running container and collects its records.
func (s *session) exec(ctx context.Context, probe, id string, cmd []string, timeout time.Duration) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ex, err := s.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return outcome{}, classify(probe, "exec create", err)
	}
	att, err := s.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return outcome{}, classify(probe, "exec attach", err)
	}
	out, stderr := s.demux(probe, att.Reader)
	select {
	case <-out.done:
	case <-ctx.Done():
		att.Close()
		<-out.done
		return outcome{records: out.c.records, watchdog: true}, &ProbeError{Probe: probe, Kind: ErrProbe, Detail: fmt.Sprintf("exec %v overran %s", cmd, timeout)}
	}
	att.Close()
	var insp container.ExecInspect
	for {
		insp, err = s.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return outcome{}, classify(probe, "exec inspect", err)
		}
		if !insp.Running {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return outcome{exit: insp.ExitCode, records: out.c.records, stderr: stderr.String()}, nil
}

// removeContainer force-removes a container with its anonymous volumes.
func (s *session) removeContainer(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := s.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefsNotFound(err) {
		return err
	}
	s.mu.Lock()
	s.containers = remove(s.containers, id)
	s.mu.Unlock()
	return nil
}

// removeVolume removes a volume the session created and forgets it, so
// that cleanup does not ask for it again.
func (s *session) removeVolume(ctx context.Context, name string) error {
	if err := s.cli.VolumeRemove(ctx, name, false); err != nil {
		return err
	}
	s.mu.Lock()
	s.volumes = remove(s.volumes, name)
	s.mu.Unlock()
	return nil
}

// removeNetwork removes a network the session created and forgets it.
func (s *session) removeNetwork(ctx context.Context, name string) error {
	if err := s.cli.NetworkRemove(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	s.networks = remove(s.networks, name)
	s.mu.Unlock()
	return nil
}

func remove(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// keep marks a resource (container ID, volume or network name) to survive cleanup under Options.Keep.
func (s *session) keep(id string) {
	s.mu.Lock()
	s.kept[id] = true
	s.mu.Unlock()
}

// cleanup removes containers, then networks, then volumes, newest first,
// each with a fresh bounded context.
func (s *session) cleanup(keep bool) {
	s.mu.Lock()
	containers := append([]string(nil), s.containers...)
	networks := append([]string(nil), s.networks...)
	volumes := append([]string(nil), s.volumes...)
	kept := maps.Clone(s.kept)
	s.mu.Unlock()
	skip := func(id string) bool { return keep && kept[id] }
	for i := len(containers) - 1; i >= 0; i-- {
		if !skip(containers[i]) {
			if err := s.removeContainer(containers[i]); err != nil {
				s.logf("cleanup: container %s: %v", containers[i], err)
			}
		}
	}
	for i := len(networks) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		if err := s.cli.NetworkRemove(ctx, networks[i]); err != nil && !cerrdefsNotFound(err) {
			s.logf("cleanup: network %s: %v", networks[i], err)
		}
		cancel()
	}
	for i := len(volumes) - 1; i >= 0; i-- {
		if skip(volumes[i]) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		if err := s.cli.VolumeRemove(ctx, volumes[i], true); err != nil && !cerrdefsNotFound(err) {
			s.logf("cleanup: volume %s: %v", volumes[i], err)
		}
		cancel()
	}
	// churn images and anything else labelled with the run
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if imgs, err := s.cli.ImageList(ctx, image.ListOptions{All: true, Filters: runFilter(s.runID)}); err == nil {
		for _, im := range imgs {
			s.cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	}
}

func runFilter(runID string) filters.Args {
	return filters.NewArgs(filters.Arg("label", LabelRun+"="+runID))
}

// Leaks lists containers, volumes, networks and images still labelled with runID.
func Leaks(ctx context.Context, cli client.APIClient, runID string) ([]string, error) {
	var out []string
	f := runFilter(runID)
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		out = append(out, "container "+strings.Join(c.Names, ","))
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, v := range vs.Volumes {
		out = append(out, "volume "+v.Name)
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		out = append(out, "network "+n.Name)
	}
	is, err := cli.ImageList(ctx, image.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, i := range is {
		out = append(out, "image "+i.ID)
	}
	return out, nil
}

func (s *session) leaks(keep bool) []string {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	left, err := Leaks(ctx, s.cli, s.runID)
	if err != nil {
		s.logf("leak check: %v", err)
		return nil
	}
	if !keep {
		return left
	}
	var out []string
	for _, l := range left {
		if !strings.HasPrefix(l, "container ") && !strings.HasPrefix(l, "volume ") {
			out = append(out, l)
		}
	}
	return out
}

// Cleanup removes everything labelled with runID (e.g. what Options.Keep left).
func Cleanup(ctx context.Context, cli client.APIClient, runID string) error {
	s := &session{cli: cli, runID: runID, sink: &sink{}, kept: map[string]bool{}, opts: Options{Log: io.Discard}}
	f := runFilter(runID)
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return classify("cleanup", "list containers", err)
	}
	for _, c := range cs {
		s.containers = append(s.containers, c.ID)
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return classify("cleanup", "list networks", err)
	}
	for _, n := range ns {
		s.networks = append(s.networks, n.Name)
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return classify("cleanup", "list volumes", err)
	}
	for _, v := range vs.Volumes {
		s.volumes = append(s.volumes, v.Name)
	}
	s.cleanup(false)
	if left := s.leaks(false); len(left) > 0 {
		return &ProbeError{Probe: "cleanup", Kind: ErrDaemon, Detail: fmt.Sprintf("left behind: %v", left)}
	}
	return nil
}

func cerrdefsNotFound(err error) bool { return client.IsErrNotFound(err) }

var errNoRecords = errors.New("no summary record")

// summarise folds a probe's records into r and returns the summary's ok.
func summarise(recs []record.Record, r *ProbeResult, prefix string) (bool, error) {
	var ok *bool
	for _, rec := range recs {
		switch rec.Kind {
		case record.KindError:
			r.Errors = append(r.Errors, rec.Source+": "+rec.Message)
		case record.KindMismatch:
			r.Mismatches = append(r.Mismatches, *rec.Mismatch)
		case record.KindSummary:
			ok = rec.OK
			for k, v := range rec.Metrics {
				r.Metrics[prefix+k] = v
			}
		}
	}
	if ok == nil {
		return false, errNoRecords
	}
	return *ok, nil
}
