package history

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// TestTiming: the medians of a provider's run and phase times, without
// the runs that never booted or another provider's.
func TestTiming(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tm, err := s.Timing(ctx, "qemu"); err != nil || tm.Runs != 0 {
		t.Fatalf("empty store: %+v, %v", tm, err)
	}
	t0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	f := file("r1", t0, results.Pass, results.Pass, results.Pass, results.Unsupported)
	for i := range 3 {
		r := &f.Runs[i]
		d := time.Duration(i+1) * time.Minute // 1, 2, 3 minutes: median 2
		r.Finished = r.Started.Add(d)
		r.Phases = []results.Phase{{Name: "boot", Duration: d / 2}, {Name: "probes", Duration: d / 4}}
	}
	other := file("r2", t0, results.Pass)
	other.Provider = "local"
	other.Runs[0].Finished = t0.Add(time.Hour)
	other.Runs[0].Phases = []results.Phase{{Name: "probes", Duration: time.Hour}}
	for _, f := range []*results.File{f, other, f} { // twice: recorded once
		if _, err := s.Append(ctx, f); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendTimes(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Timing(ctx, "qemu")
	if err != nil {
		t.Fatal(err)
	}
	want := Timing{Run: 2 * time.Minute, Runs: 3, Phases: map[string]time.Duration{"boot": time.Minute, "probes": 30 * time.Second}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("timing %+v, want %+v", got, want)
	}
}
