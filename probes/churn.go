package probes

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"github.com/matrixctl/matrixctl/probes/image"
	"github.com/matrixctl/matrixctl/probes/stats"
)

// churnPayload is the size of each churn image's payload per intensity step.
const churnPayload = 4 << 20

// churnKind is one kind of object the churn probe cycles: workers(n) of its
// cycles run at once at intensity n, each repeating until the soak ends.
type churnKind struct {
	name    string // metric prefix: <name>_cycled, <name>_per_min
	workers func(intensity int) int
	cycle   func(ctx context.Context, c *churner, worker, i int) error
}

// churnKinds are the cycles, in metric order. Containers, volumes and
// networks are cheap for the client and get one worker per intensity step;
// images carry an incompressible payload that grows with the intensity, so
// their workers grow slower (1 at 1-4, 2 at 5-8, 3 at 9-10).
var churnKinds = []churnKind{
	{"containers", perIntensity, cycleContainer},
	{"volumes", perIntensity, cycleVolume},
	{"networks", perIntensity, cycleNetwork},
	{"images", func(n int) int { return 1 + (n-1)/4 }, cycleImage},
}

func perIntensity(n int) int { return n }

// churner is the state the churn workers share.
type churner struct {
	s       *session
	payload int
	lat     map[string]*stats.Latencies // fixed keys, filled before the workers start
	peak    atomic.Int64                // layer storage with the first churn image loaded
	loaded  atomic.Int64                // image bytes loaded

	mu     sync.Mutex
	errors []string // problems that are no failed operation (an image that outlived its tags)
}

func (c *churner) timed(op string, fn func() error) error { return c.lat[op].Time(fn) }

// runChurn cycles containers (create/start/exec/stop/rm), volumes and
// networks (create/rm) and images (load/tag/remove) continuously until the
// soak ends, several of each at once as the intensity says, then prunes and
// checks that nothing leaked: no container, volume, network or image of the
// churn is left and the daemon's layer storage is back where it started
// (DiskUsage before, at peak and after). Metrics: <kind>_cycled and
// <kind>_per_min for each kind, objects_per_min over all of them.
func runChurn(ctx context.Context, s *session, r *ProbeResult) error {
	c := &churner{s: s, payload: churnPayload * s.opts.Intensity, lat: map[string]*stats.Latencies{}}
	for _, op := range []string{"container_create", "container_start", "exec", "container_stop", "container_remove",
		"volume_create", "volume_remove", "network_create", "network_remove", "image_load", "image_remove"} {
		c.lat[op] = &stats.Latencies{}
	}
	w := s.writer(Churn)
	before, err := layersSize(ctx, s)
	if err != nil {
		return err
	}
	start := time.Now()
	counts, err := c.cycleAll(ctx, start.Add(s.opts.Duration))
	elapsed := time.Since(start)
	m := r.Metrics
	var total int
	for i, k := range churnKinds {
		total += counts[i]
		m[k.name+"_cycled"] = float64(counts[i])
		m[k.name+"_per_min"] = perMinute(counts[i], elapsed)
		m[k.name+"_workers"] = float64(k.workers(s.opts.Intensity))
	}
	m["objects_per_min"] = perMinute(total, elapsed)
	m["churn_seconds"] = elapsed.Seconds()
	m["image_bytes_loaded"] = float64(c.loaded.Load())
	for op, l := range c.lat {
		if l.Count() > 0 {
			l.Into(m, op+"_latency")
		}
	}
	r.Errors = append(r.Errors, c.errors...)
	if err != nil {
		w.Metric("churn", m)
		return err
	}
	pr, err := s.cli.ImagesPrune(ctx, filters.NewArgs(filters.Arg("label", LabelRun+"="+s.runID), filters.Arg("dangling", "false")))
	if err != nil {
		return classify(Churn, "prune images", err)
	}
	after, err := layersSize(ctx, s)
	if err != nil {
		return err
	}
	leaked, err := churnLeaks(ctx, s)
	if err != nil {
		return err
	}
	m["disk_layers_before_bytes"] = float64(before)
	m["disk_layers_peak_bytes"] = float64(c.peak.Load())
	m["disk_layers_after_bytes"] = float64(after)
	m["disk_prune_reclaimed_bytes"] = float64(pr.SpaceReclaimed)
	m["disk_not_freed_bytes"] = float64(max(0, after-before))
	m["leaked_objects"] = float64(len(leaked))
	w.Metric("churn", m)
	r.Errors = append(r.Errors, leaked...)
	var problems []string
	if len(leaked) > 0 {
		problems = append(problems, fmt.Sprintf("leaked: %s", strings.Join(leaked, ", ")))
	}
	if after-before > int64(c.payload)/2 {
		problems = append(problems, fmt.Sprintf("layer storage grew by %d bytes after removing every churn image (before %d, after %d)", after-before, before, after))
	}
	if len(r.Errors) > 0 && len(problems) == 0 {
		problems = append(problems, r.Errors[0])
	}
	for _, p := range problems {
		w.Error("churn", "%s", p)
	}
	if len(problems) > 0 {
		return &ProbeError{Probe: Churn, Kind: ErrDaemon, Detail: strings.Join(problems, "; ")}
	}
	r.OK = true
	return nil
}

// cycleAll runs every kind's workers until deadline (each worker completes
// at least one cycle) and returns the completed cycles per kind, in the
// order of churnKinds. The first failure stops every worker and is the
// error; a cancelled ctx is a cancellation.
func (c *churner) cycleAll(ctx context.Context, deadline time.Time) ([]int, error) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	counts := make([]atomic.Int64, len(churnKinds))
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for k, kind := range churnKinds {
		for worker := range kind.workers(c.s.opts.Intensity) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i == 0 || time.Now().Before(deadline); i++ {
					if wctx.Err() != nil {
						return
					}
					if err := kind.cycle(wctx, c, worker, i); err != nil {
						once.Do(func() { first = err; stop() })
						return
					}
					counts[k].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	out := make([]int, len(counts))
	for i := range counts {
		out[i] = int(counts[i].Load())
	}
	if ctx.Err() != nil {
		return out, fmt.Errorf("%s: %w", Churn, ctx.Err())
	}
	return out, first
}

// perMinute is n events over d as a rate per minute.
func perMinute(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Minutes()
}

// cycleContainer creates, starts, execs into, stops and removes one container.
func cycleContainer(ctx context.Context, c *churner, worker, i int) error {
	s := c.s
	var id string
	if err := c.timed("container_create", func() (err error) {
		id, err = s.create(ctx, Churn, containerSpec{role: fmt.Sprintf("churn-c%d-%d", worker, i), cmd: []string{"sleep", "-for", "10m"}})
		return err
	}); err != nil {
		return err
	}
	if err := c.timed("container_start", func() error { return s.cli.ContainerStart(ctx, id, container.StartOptions{}) }); err != nil {
		return classify(Churn, "start container", err)
	}
	var o outcome
	if err := c.timed("exec", func() (err error) {
		o, err = s.exec(ctx, Churn, id, []string{"/matrixctl-probe", "true"}, time.Minute)
		return err
	}); err != nil {
		return err
	}
	if o.exit != 0 {
		return &ProbeError{Probe: Churn, Kind: ErrDaemon, Detail: fmt.Sprintf("exec exited %d: %s", o.exit, o.stderr)}
	}
	stop := 5
	if err := c.timed("container_stop", func() error {
		return s.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &stop})
	}); err != nil {
		return classify(Churn, "stop container", err)
	}
	if err := c.timed("container_remove", func() error { return s.removeContainer(id) }); err != nil {
		return classify(Churn, "remove container", err)
	}
	return nil
}

// cycleVolume creates and removes one volume.
func cycleVolume(ctx context.Context, c *churner, worker, i int) error {
	var vol string
	if err := c.timed("volume_create", func() (err error) {
		vol, err = c.s.createVolume(ctx, Churn, fmt.Sprintf("churn-v%d-%d", worker, i))
		return err
	}); err != nil {
		return err
	}
	if err := c.timed("volume_remove", func() error { return c.s.removeVolume(ctx, vol) }); err != nil {
		return classify(Churn, "remove volume", err)
	}
	return nil
}

// cycleNetwork creates and removes one bridge network.
func cycleNetwork(ctx context.Context, c *churner, worker, i int) error {
	var name string
	if err := c.timed("network_create", func() (err error) {
		name, err = c.s.createNetwork(ctx, Churn, fmt.Sprintf("churn-n%d-%d", worker, i))
		return err
	}); err != nil {
		return err
	}
	if err := c.timed("network_remove", func() error { return c.s.removeNetwork(ctx, name) }); err != nil {
		return classify(Churn, "remove network", err)
	}
	return nil
}

// cycleImage loads a distinct image with a payload, tags it a second time,
// removes both tags and checks the image is gone. The first worker's first
// image measures the layer storage at its peak.
func cycleImage(ctx context.Context, c *churner, worker, i int) error {
	s := c.s
	tarball, info, err := churnImage(s.runID, worker<<20|i, c.payload)
	if err != nil {
		return err
	}
	if err := c.timed("image_load", func() error { return loadImage(ctx, s.cli, tarball) }); err != nil {
		return classify(Churn, "load churn image", err)
	}
	c.loaded.Add(int64(len(tarball)))
	extra := info.Tag + "-alias"
	if err := s.cli.ImageTag(ctx, info.Tag, extra); err != nil {
		return classify(Churn, "tag churn image", err)
	}
	if worker == 0 && i == 0 {
		peak, err := layersSize(ctx, s)
		if err != nil {
			return err
		}
		c.peak.Store(peak)
	}
	if err := c.timed("image_remove", func() error {
		for _, ref := range []string{extra, info.Tag} {
			if _, err := s.cli.ImageRemove(ctx, ref, dimage.RemoveOptions{PruneChildren: true}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return classify(Churn, "remove churn image", err)
	}
	if _, err := s.cli.ImageInspect(ctx, info.ID); err == nil {
		c.mu.Lock()
		c.errors = append(c.errors, fmt.Sprintf("image %s still present after its last tag was removed", info.ID))
		c.mu.Unlock()
	} else if !cerrdefsNotFound(err) {
		return classify(Churn, "inspect removed image", err)
	}
	return nil
}

// layersSize is the daemon's total image layer storage.
func layersSize(ctx context.Context, s *session) (int64, error) {
	du, err := s.cli.DiskUsage(ctx, types.DiskUsageOptions{})
	if err != nil {
		return 0, classify(Churn, "disk usage", err)
	}
	return du.LayersSize, nil
}

// churnLeaks lists churn containers, volumes and images of this run still present.
func churnLeaks(ctx context.Context, s *session) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", LabelRun+"="+s.runID))
	var out []string
	cs, err := s.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, classify(Churn, "list containers", err)
	}
	for _, c := range cs {
		if strings.HasPrefix(c.Labels[LabelRole], "churn") {
			out = append(out, "container "+strings.Join(c.Names, ","))
		}
	}
	vs, err := s.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, classify(Churn, "list volumes", err)
	}
	for _, v := range vs.Volumes {
		if strings.HasPrefix(v.Labels[LabelRole], "churn") {
			out = append(out, "volume "+v.Name)
		}
	}
	ns, err := s.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, classify(Churn, "list networks", err)
	}
	for _, n := range ns {
		if strings.HasPrefix(n.Labels[LabelRole], "churn") {
			out = append(out, "network "+n.Name)
		}
	}
	is, err := s.cli.ImageList(ctx, dimage.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, classify(Churn, "list images", err)
	}
	for _, im := range is {
		out = append(out, "image "+im.ID)
	}
	return out, nil
}

// churnImage is a distinct image per (run, i) with an incompressible payload.
func churnImage(runID string, i, size int) ([]byte, image.Info, error) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], seedOf(runID))
	binary.LittleEndian.PutUint64(seed[8:], uint64(i))
	data := make([]byte, size)
	rand.NewChaCha8(seed).Read(data)
	return image.Build(image.Spec{
		Repo:       ImageRepo + "-churn",
		Files:      []image.File{{Path: "payload", Data: data}},
		Entrypoint: []string{"/payload"},
		Labels:     map[string]string{LabelProbe: "1", LabelRun: runID, LabelRole: "churn-image"},
	})
}
