package runner

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/matrixctl/matrixctl/matrix"
)

// prefetchingProvider records the cells it was asked to prefetch; its
// Prepare of a cell waits until that cell's images were prefetched, as a
// real one waits on the cache's build lock.
type prefetchingProvider struct {
	*fakeProvider
	mu      sync.Mutex
	fetched []string
	changed chan struct{}
}

func (p *prefetchingProvider) Prefetch(_ context.Context, c matrix.Cell) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetched = append(p.fetched, c.ID)
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

func (p *prefetchingProvider) Prepare(ctx context.Context, req Request) error {
	for req.Cell.ID == "c" {
		p.mu.Lock()
		if slices.Contains(p.fetched, "c") {
			p.mu.Unlock()
			break
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.fakeProvider.Prepare(ctx, req)
}

// The images of the cells still to run are prefetched once per distinct
// kernel/distro/docker, in plan order; unsupported and done cells are not.
func TestPrefetchDistinctImagesOfPendingCells(t *testing.T) {
	fake := newFake(nil)
	p := &prefetchingProvider{fakeProvider: fake, changed: make(chan struct{})}
	a, b, c, d := testCell("a"), testCell("b"), testCell("c"), testCell("d")
	b.Driver = "vfs" // same images as a
	c.Distro = matrix.DistroRef{Name: "debian13", Suite: "trixie"}
	d.Kernel = matrix.KernelRef{Version: "6.12"}
	d.Status = matrix.StatusUnsupported
	if _, err := Run(context.Background(), []matrix.Cell{a, b, c, d}, Options{Provider: p, Prober: fakeProber{fake}, Out: t.TempDir(), Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.fetched) != 2 || p.fetched[0] != "a" || p.fetched[1] != "c" {
		t.Errorf("prefetched %v, want [a c]", p.fetched)
	}
}
