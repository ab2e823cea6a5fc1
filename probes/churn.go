package probes

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
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

// runChurn loops container create/start/exec/stop/rm, volume and network create/rm and
// image load/tag/remove, then prunes, and checks that nothing leaked: no
// container, volume, network or image of the loop is left and the daemon's layer
// storage is back where it started (DiskUsage before, at peak and after).
func runChurn(ctx context.Context, s *session, r *ProbeResult) error {
	lat := map[string]*stats.Latencies{}
	timed := func(op string, fn func() error) error {
		l := lat[op]
		if l == nil {
			l = &stats.Latencies{}
			lat[op] = l
		}
		return l.Time(fn)
	}
	w := s.writer(Churn)
	before, err := layersSize(ctx, s)
	if err != nil {
		return err
	}
	payload := churnPayload * s.opts.Intensity
	var peak int64
	var containers, volumes, networks, images int
	var loadedBytes int64
	deadline := time.Now().Add(s.opts.Duration)
	for i := 0; i == 0 || time.Now().Before(deadline); i++ {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", Churn, ctx.Err())
		}
		// container lifecycle
		var id string
		if err := timed("container_create", func() (err error) {
			id, err = s.create(ctx, Churn, containerSpec{role: fmt.Sprintf("churn-c%d", i), cmd: []string{"sleep", "-for", "10m"}})
			return err
		}); err != nil {
			return err
		}
		if err := timed("container_start", func() error { return s.cli.ContainerStart(ctx, id, container.StartOptions{}) }); err != nil {
			return classify(Churn, "start container", err)
		}
		var o outcome
		if err := timed("exec", func() (err error) {
			o, err = s.exec(ctx, Churn, id, []string{"/matrixctl-probe", "true"}, time.Minute)
			return err
		}); err != nil {
			return err
		}
		if o.exit != 0 {
			return &ProbeError{Probe: Churn, Kind: ErrDaemon, Detail: fmt.Sprintf("exec exited %d: %s", o.exit, o.stderr)}
		}
		stop := 5
		if err := timed("container_stop", func() error {
			return s.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &stop})
		}); err != nil {
			return classify(Churn, "stop container", err)
		}
		if err := timed("container_remove", func() error { return s.removeContainer(id) }); err != nil {
			return classify(Churn, "remove container", err)
		}
		containers++
		// volume lifecycle
		var vol string
		if err := timed("volume_create", func() (err error) {
			vol, err = s.createVolume(ctx, Churn, fmt.Sprintf("churn-v%d", i))
			return err
		}); err != nil {
			return err
		}
		if err := timed("volume_remove", func() error { return s.cli.VolumeRemove(ctx, vol, false) }); err != nil {
			return classify(Churn, "remove volume", err)
		}
		volumes++
		// network lifecycle
		var netName string
		if err := timed("network_create", func() (err error) {
			netName, err = s.createNetwork(ctx, Churn, fmt.Sprintf("churn-n%d", i))
			return err
		}); err != nil {
			return err
		}
		if err := timed("network_remove", func() error { return s.cli.NetworkRemove(ctx, netName) }); err != nil {
			return classify(Churn, "remove network", err)
		}
		networks++
		// image lifecycle
		tarball, info, err := churnImage(s.runID, i, payload)
		if err != nil {
			return err
		}
		if err := timed("image_load", func() error { return loadImage(ctx, s.cli, tarball) }); err != nil {
			return classify(Churn, "load churn image", err)
		}
		loadedBytes += int64(len(tarball))
		images++
		extra := info.Tag + "-alias"
		if err := s.cli.ImageTag(ctx, info.Tag, extra); err != nil {
			return classify(Churn, "tag churn image", err)
		}
		if i == 0 {
			if peak, err = layersSize(ctx, s); err != nil {
				return err
			}
		}
		if err := timed("image_remove", func() error {
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
			r.Errors = append(r.Errors, fmt.Sprintf("image %s still present after its last tag was removed", info.ID))
		} else if !cerrdefsNotFound(err) {
			return classify(Churn, "inspect removed image", err)
		}
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
	m := r.Metrics
	m["containers_cycled"] = float64(containers)
	m["volumes_cycled"] = float64(volumes)
	m["networks_cycled"] = float64(networks)
	m["images_cycled"] = float64(images)
	m["image_bytes_loaded"] = float64(loadedBytes)
	m["disk_layers_before_bytes"] = float64(before)
	m["disk_layers_peak_bytes"] = float64(peak)
	m["disk_layers_after_bytes"] = float64(after)
	m["disk_prune_reclaimed_bytes"] = float64(pr.SpaceReclaimed)
	m["disk_not_freed_bytes"] = float64(max(0, after-before))
	m["leaked_objects"] = float64(len(leaked))
	for op, l := range lat {
		l.Into(m, op+"_latency")
	}
	w.Metric("churn", m)
	r.Errors = append(r.Errors, leaked...)
	var problems []string
	if len(leaked) > 0 {
		problems = append(problems, fmt.Sprintf("leaked: %s", strings.Join(leaked, ", ")))
	}
	if after-before > int64(payload)/2 {
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
