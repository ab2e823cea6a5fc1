package probes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/probes/record"
)

// fakeSession is a session over a fakeDaemon whose records go to a file,
// without a probe image (runProbes never touches it).
func fakeSession(t *testing.T, opts Options) (*session, *fakeDaemon, string) {
	t.Helper()
	opts.RecordsPath = filepath.Join(t.TempDir(), "probes.jsonl")
	opts.Log = testutil.LogWriter(t)
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	d := newFakeDaemon()
	s := &session{cli: d, opts: opts, runID: opts.RunID, sink: &sink{}, kept: map[string]bool{}}
	f, err := openRecords(opts.RecordsPath)
	if err != nil {
		t.Fatal(err)
	}
	s.sink.f = f
	t.Cleanup(s.close)
	return s, d, opts.RecordsPath
}

// busyProbe creates and removes containers, volumes and networks like a real
// probe, leaves one of each for cleanup, writes its own records and
// metrics, and calls meet once it has started (nil: does not wait).
func busyProbe(meet func(name string) error, fail error) probeFunc {
	return func(ctx context.Context, s *session, r *ProbeResult) error {
		name := r.Name
		if meet != nil {
			if err := meet(name); err != nil {
				return err
			}
		}
		w := s.writer(name)
		for i := range 20 {
			id, err := s.create(ctx, name, containerSpec{role: fmt.Sprintf("%s-c%d", name, i)})
			if err != nil {
				return err
			}
			vol, _ := s.createVolume(ctx, name, fmt.Sprintf("%s-v%d", name, i))
			nw, _ := s.createNetwork(ctx, name, fmt.Sprintf("%s-n%d", name, i))
			if i%5 != 4 { // every fifth set is left for cleanup
				s.removeContainer(id)
				s.removeVolume(ctx, vol)
				s.removeNetwork(ctx, nw)
			}
			w.Metric(name, map[string]float64{"step": float64(i)})
		}
		r.Metrics[name+"_only"] = 1
		if fail != nil {
			return fail
		}
		r.OK = true
		return nil
	}
}

// checkOwnRecords: every record is stamped with a probe that ran, metric
// records carry their probe's own source, and each probe's driver summary
// holds exactly its own metrics.
func checkOwnRecords(t *testing.T, path string, res []ProbeResult) {
	t.Helper()
	recs, torn, err := record.ReadFile(path)
	if err != nil || torn {
		t.Fatalf("records: torn=%v err=%v", torn, err)
	}
	metrics := map[string]int{}
	for _, rec := range recs {
		switch {
		case rec.Kind == record.KindMetric && rec.Source != rec.Probe:
			t.Errorf("%s's record has source %s", rec.Probe, rec.Source)
		case rec.Kind == record.KindMetric:
			metrics[rec.Probe]++
		case rec.Kind == record.KindSummary:
			for _, r := range res {
				if r.Name == rec.Probe && (len(rec.Metrics) != 1 || rec.Metrics[r.Name+"_only"] != 1) {
					t.Errorf("%s's summary has metrics %v", rec.Probe, rec.Metrics)
				}
			}
		}
	}
	for _, r := range res {
		if metrics[r.Name] != 20 {
			t.Errorf("%s: %d metric records, want 20", r.Name, metrics[r.Name])
		}
		if len(r.Metrics) != 1 || r.Metrics[r.Name+"_only"] != 1 {
			t.Errorf("%s: metrics %v", r.Name, r.Metrics)
		}
	}
}

// TestRunProbesConcurrent: by default the probes run at once (each waits
// until all have started, which one after the other would never happen),
// their results come back in the order asked for, one probe's failure is
// its own, and cleanup leaves nothing behind.
func TestRunProbesConcurrent(t *testing.T) {
	order := []string{Churn, IO, Net}
	s, d, path := fakeSession(t, Options{Probes: order})
	var started sync.WaitGroup
	started.Add(len(order))
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	meet := func(string) error {
		started.Done()
		select {
		case <-all:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the other probes never started: not concurrent")
		}
	}
	broken := &ProbeError{Probe: IO, Kind: ErrIntegrity, Detail: "1 mismatching block"}
	table := map[string]probeFunc{Churn: busyProbe(meet, nil), IO: busyProbe(meet, broken), Net: busyProbe(meet, nil)}
	res, errs := s.runProbes(context.Background(), table)
	if got := names(res); !slices.Equal(got, order) {
		t.Fatalf("results in order %v, want %v", got, order)
	}
	for _, r := range res {
		if wantOK := r.Name != IO; r.OK != wantOK {
			t.Errorf("%s: ok=%v err=%v", r.Name, r.OK, r.Err)
		}
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrIntegrity) || !errors.Is(res[1].Err, ErrIntegrity) {
		t.Fatalf("errors %v, want the IO probe's integrity failure only", errs)
	}
	if !overlap(res) {
		t.Errorf("probes did not overlap: %+v", res)
	}
	checkOwnRecords(t, path, res)
	s.cleanup(false)
	if left := s.leaks(false); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if n := len(d.names(d.containers)) + len(d.names(d.volumes)) + len(d.names(d.network)); n != 0 {
		t.Errorf("%d objects left in the daemon", n)
	}
}

// TestRunProbesSequential: Options.Sequential runs one probe at a time, in
// the order asked for.
func TestRunProbesSequential(t *testing.T) {
	order := []string{Net, IO, Churn}
	s, _, path := fakeSession(t, Options{Probes: order, Sequential: true})
	var running, most atomic.Int32
	var mu sync.Mutex
	var ran []string
	meet := func(name string) error {
		n := running.Add(1)
		defer running.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		mu.Lock()
		ran = append(ran, name)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	table := map[string]probeFunc{Churn: busyProbe(meet, nil), IO: busyProbe(meet, nil), Net: busyProbe(meet, nil)}
	res, errs := s.runProbes(context.Background(), table)
	if len(errs) > 0 || most.Load() != 1 || !slices.Equal(ran, order) || !slices.Equal(names(res), order) || overlap(res) {
		t.Fatalf("errs %v, at most %d at once, ran %v, results %v", errs, most.Load(), ran, names(res))
	}
	checkOwnRecords(t, path, res)
	s.cleanup(false)
	if left := s.leaks(false); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestRunProbesCancel: a cancellation reaches every concurrent probe; each
// ends with it (no probe failure class: infra-error), the run says it was
// cancelled, and cleanup still removes what they created. Sequentially, the
// probes after the cancelled one do not start.
func TestRunProbesCancel(t *testing.T) {
	for _, seq := range []bool{false, true} {
		t.Run(fmt.Sprintf("sequential=%v", seq), func(t *testing.T) {
			s, _, _ := fakeSession(t, Options{Sequential: seq})
			ctx, cancel := context.WithCancel(context.Background())
			var started atomic.Int32
			block := func(ctx context.Context, s *session, r *ProbeResult) error {
				if _, err := s.create(ctx, r.Name, containerSpec{role: r.Name}); err != nil {
					return err
				}
				if started.Add(1) == 3 || seq {
					cancel()
				}
				<-ctx.Done()
				return fmt.Errorf("%s: %w", r.Name, ctx.Err())
			}
			res, errs := s.runProbes(ctx, map[string]probeFunc{IO: block, Net: block, Churn: block})
			want := 3
			if seq {
				want = 1
			}
			if len(res) != want {
				t.Fatalf("%d results, want %d", len(res), want)
			}
			err := errors.Join(errs...)
			for _, r := range res {
				if !errors.Is(r.Err, context.Canceled) || r.OK {
					t.Errorf("%s: %v", r.Name, r.Err)
				}
			}
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrProbe) || errors.Is(err, ErrDaemon) {
				t.Errorf("joined error %v", err)
			}
			s.cleanup(false)
			if left := s.leaks(false); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

func TestPerMinute(t *testing.T) {
	if got := perMinute(30, 30*time.Second); got != 60 {
		t.Errorf("perMinute(30, 30s) = %v", got)
	}
	if got := perMinute(5, 0); got != 0 {
		t.Errorf("perMinute(5, 0) = %v", got)
	}
}

// TestChurnKindsScale: every kind cycles at intensity 1, and more workers
// cycle at a higher intensity.
func TestChurnKindsScale(t *testing.T) {
	for _, k := range churnKinds {
		if k.workers(1) != 1 || k.workers(10) <= k.workers(1) {
			t.Errorf("%s: %d workers at intensity 1, %d at 10", k.name, k.workers(1), k.workers(10))
		}
	}
}

func names(res []ProbeResult) []string {
	var out []string
	for _, r := range res {
		out = append(out, r.Name)
	}
	return out
}

// overlap: some two probes ran at the same time.
func overlap(res []ProbeResult) bool {
	for i, a := range res {
		for _, b := range res[i+1:] {
			if a.Started.Before(b.Finished) && b.Started.Before(a.Finished) {
				return true
			}
		}
	}
	return false
}
