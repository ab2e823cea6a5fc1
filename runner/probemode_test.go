package runner

import (
	"context"
	"sync"
	"testing"

	"github.com/matrixctl/matrixctl/matrix"
)

// modeProber records the requests' Sequential flags.
type modeProber struct {
	fakeProber
	mu   sync.Mutex
	seen []bool
}

func (p *modeProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	p.mu.Lock()
	p.seen = append(p.seen, req.Sequential)
	p.mu.Unlock()
	return p.fakeProber.RunProbes(ctx, req)
}

// TestProbeModeRecorded: the probes run concurrently unless
// Options.ProbesSequential says otherwise, the prober is asked for that
// mode, and results.json records it per run.
func TestProbeModeRecorded(t *testing.T) {
	for _, tt := range []struct {
		sequential bool
		want       string
	}{{false, "concurrent"}, {true, "sequential"}} {
		fake := newFake(nil)
		p := &modeProber{fakeProber: fakeProber{fake}}
		f, err := Run(context.Background(), []matrix.Cell{testCell("a")}, Options{
			Provider: fake, Prober: p, Out: t.TempDir(), ProbesSequential: tt.sequential,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.seen) != 1 || p.seen[0] != tt.sequential {
			t.Errorf("sequential=%v: prober asked %v", tt.sequential, p.seen)
		}
		if len(f.Runs) != 1 || f.Runs[0].ProbeMode != tt.want {
			t.Errorf("sequential=%v: runs %+v, want probe_mode %s", tt.sequential, f.Runs, tt.want)
		}
	}
}
