package probes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/probes/block"
	"github.com/matrixctl/matrixctl/probes/record"
)

// requiresDocker returns a client of a daemon that answers, or ends t
// through testutil.RequiresDocker.
func requiresDocker(t *testing.T) client.APIClient {
	t.Helper()
	testutil.Integration(t)
	cli, err := NewClient()
	testutil.RequiresDocker(t, err)
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx)
	testutil.RequiresDocker(t, err)
	return cli
}

// workdir is where the probe binary and image are built: in the shared cache.
func workdir() string { return filepath.Join(testutil.CacheDir(), "probes") }

// assertNoLeaks fails t if anything labelled with runID is left.
func assertNoLeaks(t *testing.T, cli client.APIClient, runID string) {
	t.Helper()
	left, err := Leaks(context.Background(), cli, runID)
	if err != nil {
		t.Fatalf("leak check: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("left behind by run %s: %v", runID, left)
	}
}

func runProbe(t *testing.T, cli client.APIClient, name string, opts Options) *Result {
	t.Helper()
	opts.Probes = []string{name}
	if opts.Duration == 0 {
		opts.Duration = 4 * time.Second
	}
	opts.RecordsPath = filepath.Join(t.TempDir(), "records.jsonl")
	opts.Workdir = workdir()
	opts.Log = testutil.LogWriter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, cli, opts)
	if res != nil {
		t.Cleanup(func() { assertNoLeaks(t, cli, res.RunID) })
	}
	if err != nil {
		t.Fatalf("Run %s: %v\nresult: %+v", name, err, res)
	}
	recs, torn, err := record.ReadFile(opts.RecordsPath)
	if err != nil || torn {
		t.Fatalf("records: torn=%v err=%v", torn, err)
	}
	if len(recs) == 0 {
		t.Fatalf("no records in %s", opts.RecordsPath)
	}
	p := res.Probes[0]
	t.Logf("%s: ok=%v records=%d errors=%v", name, p.OK, len(recs), p.Errors)
	for _, k := range sortedKeys(p.Metrics) {
		t.Logf("  %s = %.0f", k, p.Metrics[k])
	}
	if !p.OK {
		t.Fatalf("%s not ok: %+v", name, p)
	}
	return res
}

func TestIntegrationIOProbe(t *testing.T) {
	cli := requiresDocker(t)
	res := runProbe(t, cli, IO, Options{})
	m := res.Probes[0].Metrics
	if m["bytes_written"] == 0 || m["bytes_verified"] == 0 {
		t.Errorf("no bytes written/verified: %v", m)
	}
}

func TestIntegrationNetProbe(t *testing.T) {
	cli := requiresDocker(t)
	res := runProbe(t, cli, Net, Options{})
	m := res.Probes[0].Metrics
	for _, k := range []string{"bridge_conns_ok", "usernet_conns_ok", "pubport_conns_ok", "bridge_stream_bytes"} {
		if m[k] == 0 {
			t.Errorf("%s = 0", k)
		}
	}
}

func TestIntegrationChurnProbeFreesDisk(t *testing.T) {
	cli := requiresDocker(t)
	res := runProbe(t, cli, Churn, Options{})
	m := res.Probes[0].Metrics
	t.Logf("image churn disk (LayersSize): before=%.0f peak=%.0f after=%.0f loaded=%.0f images=%.0f",
		m["disk_layers_before_bytes"], m["disk_layers_peak_bytes"], m["disk_layers_after_bytes"], m["image_bytes_loaded"], m["images_cycled"])
	if m["disk_layers_peak_bytes"] < m["disk_layers_before_bytes"]+churnPayload/2 {
		t.Errorf("loading a churn image did not show in disk usage: %v", m)
	}
	if m["disk_layers_after_bytes"] > m["disk_layers_before_bytes"]+churnPayload/2 {
		t.Errorf("image churn did not free its disk space: %v", m)
	}
}

// TestIntegrationVerifyNamesCorruptBlock corrupts one block of a file the IO
// probe wrote and fsynced into its volume, through the volume's host
// directory, and checks that verification names the file and offset.
func TestIntegrationVerifyNamesCorruptBlock(t *testing.T) {
	cli := requiresDocker(t)
	testutil.RequiresRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := Options{Probes: []string{IO}, Duration: 2 * time.Second, Keep: true, Workdir: workdir(), Log: testutil.LogWriter(t)}
	res, err := Run(ctx, cli, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if err := Cleanup(context.Background(), cli, res.RunID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNoLeaks(t, cli, res.RunID)
	})
	vol := res.Probes[0].Kept["volume"]
	v, err := cli.VolumeInspect(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	// pick the first promised sequential file in the volume and flip a byte in its third block
	matches, _ := filepath.Glob(filepath.Join(v.Mountpoint, "io", "seq-*"))
	if len(matches) == 0 {
		t.Fatalf("no seq file under %s", v.Mountpoint)
	}
	host := matches[0]
	const off = 2 * block.Size
	f, err := os.OpenFile(host, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+100)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	inContainer := ioVolumeMount + "/io/" + filepath.Base(host)
	t.Logf("corrupted %s (in container %s) at offset %d", host, inContainer, off)

	vr, err := VerifyIO(ctx, cli, VerifyOptions{RunID: res.RunID, Volume: vol, Workdir: workdir()})
	if !errors.Is(err, ErrDataLoss) {
		t.Fatalf("VerifyIO: err = %v, want ErrDataLoss", err)
	}
	found := false
	for _, m := range vr.Mismatches {
		t.Logf("mismatch: file=%s offset=%d kind=%s expected=%q found=%q promised=%v", m.File, m.Offset, m.Kind, m.Expected, m.Found, m.Promised)
		if m.File == inContainer && m.Offset == off && m.Kind == string(block.Checksum) && m.Promised {
			found = true
		}
	}
	if !found || len(vr.Mismatches) != 1 {
		t.Fatalf("want exactly one promised checksum mismatch at %s:%d, got %+v", inContainer, off, vr.Mismatches)
	}
}

// TestIntegrationKilledIOProbe cancels a long IO run (the driver kills the
// container), reads back the records the probe had flushed to its volume, and
// restarts the kept container, which verifies the journal's promises in its
// writable layer and its volume — the flow a runner uses after a power cut.
func TestIntegrationKilledIOProbe(t *testing.T) {
	cli := requiresDocker(t)
	testutil.RequiresRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runID := fmt.Sprintf("kill%d", time.Now().UnixNano()%1e6)
	go func() {
		// cancel 3s after the IO container is running
		for runCtx.Err() == nil {
			cs, _ := cli.ContainerList(runCtx, container.ListOptions{Filters: runFilter(runID)})
			if len(cs) > 0 {
				time.Sleep(3 * time.Second)
				stop()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	res, err := Run(runCtx, cli, Options{Probes: []string{IO}, Duration: time.Minute, Keep: true, RunID: runID, Workdir: workdir(), Log: testutil.LogWriter(t)})
	if res == nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if err := Cleanup(context.Background(), cli, res.RunID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNoLeaks(t, cli, res.RunID)
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrProbe) || errors.Is(err, ErrDaemon) || errors.Is(err, ErrIntegrity) || errors.Is(err, ErrDataLoss) {
		t.Fatalf("Run err = %v, want a cancellation of no probe failure class (infra-error)", err)
	}
	kept := res.Probes[0].Kept
	v, err := cli.VolumeInspect(ctx, kept["volume"])
	if err != nil {
		t.Fatal(err)
	}
	recs, torn, err := record.ReadFile(filepath.Join(v.Mountpoint, "records.jsonl"))
	if err != nil {
		t.Fatalf("records of the killed probe: %v", err)
	}
	t.Logf("killed probe left %d readable records (torn tail: %v)", len(recs), torn)
	if len(recs) == 0 {
		t.Error("the killed probe left no records")
	}
	jst, err := os.Stat(filepath.Join(v.Mountpoint, "journal.jsonl"))
	if err != nil || jst.Size() == 0 {
		t.Fatalf("journal: %v", err)
	}
	vr, err := VerifyIO(ctx, cli, VerifyOptions{RunID: res.RunID, Container: kept["container"], Workdir: workdir()})
	if err != nil {
		t.Fatalf("VerifyIO after kill: %v (%+v)", err, vr)
	}
	t.Logf("post-kill verification: %v", vr.Metrics)
	if vr.Metrics["promised_files"] == 0 || vr.Metrics["bytes_verified"] == 0 {
		t.Fatalf("nothing verified: %v", vr.Metrics)
	}
}

// TestIntegrationWatchdogKills runs a probe container that never exits on
// its own and checks the outside deadline kills it and calls it a probe failure.
func TestIntegrationWatchdogKills(t *testing.T) {
	cli := requiresDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, err := Options{Workdir: workdir(), Log: testutil.LogWriter(t)}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSession(ctx, cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.cleanup(false)
		s.close()
		assertNoLeaks(t, cli, s.runID)
	}()
	id, err := s.create(ctx, "test", containerSpec{role: "sleeper", cmd: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o, err := s.runToExit(ctx, "test", id, 2*time.Second)
	if err != nil || !o.watchdog {
		t.Fatalf("runToExit: watchdog=%v err=%v", o.watchdog, err)
	}
	t.Logf("watchdog killed the container after %s, exit %d", time.Since(start).Round(time.Millisecond), o.exit)
	if jerr := judge("test", o, &ProbeResult{Metrics: map[string]float64{}}, ErrIntegrity); !errors.Is(jerr, ErrProbe) {
		t.Fatalf("judge = %v, want ErrProbe", jerr)
	}
	insp, err := cli.ContainerInspect(ctx, id)
	if err != nil || insp.State.Running {
		t.Fatalf("container still running after the watchdog: %v", err)
	}
}

// TestIntegrationAllProbes runs every probe in one Run, as the runner does
// (concurrently: mixed load), and checks that they overlapped, that each
// probe's records, driver summary and metrics are its own, that each
// reports its load figure, and the combined records file and the results
// mapping. Costs about 3 s of soak plus the churn's cleanup on the host dockerd.
func TestIntegrationAllProbes(t *testing.T) {
	cli := requiresDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "probes.jsonl")
	res, err := Run(ctx, cli, Options{Duration: 3 * time.Second, RecordsPath: path, Workdir: workdir(), Log: testutil.LogWriter(t)})
	if res != nil {
		defer assertNoLeaks(t, cli, res.RunID)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs, torn, err := record.ReadFile(path)
	if err != nil || torn {
		t.Fatalf("records: torn=%v err=%v", torn, err)
	}
	perProbe := map[string]int{}
	closing := map[string]bool{}
	summary := map[string]map[string]float64{}
	for _, r := range recs {
		perProbe[r.Probe]++
		if r.Kind == record.KindSummary && r.Source == record.SourceDriver {
			closing[r.Probe] = *r.OK
			summary[r.Probe] = r.Metrics
		}
	}
	if res.Mode != ModeConcurrent || !overlap(res.Probes) {
		t.Errorf("mode %s: the probes did not run at once", res.Mode)
	}
	// each probe's own load figure, in its own metrics only
	own := map[string]string{IO: "bytes_written", Net: "conns_ok", Churn: "containers_per_min"}
	for _, p := range res.Probes {
		t.Logf("%s: %s .. %s, %s = %.1f", p.Name, p.Started.Format("15:04:05.000"), p.Finished.Format("15:04:05.000"), own[p.Name], p.Metrics[own[p.Name]])
		if !maps.Equal(summary[p.Name], p.Metrics) {
			t.Errorf("%s: driver summary metrics %v, result %v", p.Name, summary[p.Name], p.Metrics)
		}
		for name, key := range own {
			if got := p.Metrics[key] > 0; got != (name == p.Name) {
				t.Errorf("%s: metric %s = %v", p.Name, key, p.Metrics[key])
			}
		}
	}
	for _, k := range churnKinds {
		if m := res.Probes[2].Metrics; m[k.name+"_cycled"] == 0 || m[k.name+"_per_min"] == 0 {
			t.Errorf("churn cycled no %s: %v", k.name, m)
		}
	}
	for _, name := range All() {
		if !closing[name] {
			t.Errorf("no passing driver summary record for %s", name)
		}
	}
	t.Logf("run %s image %s: %d records %v", res.RunID, res.Image, len(recs), perProbe)
	for _, p := range res.Probes {
		s := p.Summary()
		if !s.OK || perProbe[p.Name] == 0 {
			t.Errorf("%s: ok=%v records=%d errors=%v", p.Name, s.OK, perProbe[p.Name], s.Errors)
		}
	}
	if len(res.Probes) != len(All()) {
		t.Fatalf("ran %d probes", len(res.Probes))
	}
}

func TestIntegrationRemoveStaleImages(t *testing.T) {
	cli := requiresDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tag, err := EnsureImage(ctx, cli, "", workdir())
	if err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStaleImages(ctx, cli, tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kept %s, removed %v", tag, removed)
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		t.Fatalf("current probe image gone: %v", err)
	}
}
