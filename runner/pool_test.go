package runner

import (
	"context"
	"testing"
	"time"
)

func TestPoolBudget(t *testing.T) {
	ctx := context.Background()
	cell := testCell("a")
	cell.Settings.CPUs, cell.Settings.MemoryMB = 2, 2048

	// 2 cores: one 2-CPU VM at a time by default
	p := newPool(Options{HostCPUs: 2, HostMemoryMB: 24000})
	c := p.cost(cell)
	if !p.acquire(ctx, nil, c) {
		t.Fatal("empty pool refused a cell")
	}
	if fitsNow(p, c) {
		t.Fatal("a second 2-CPU cell fit into 2 cores")
	}
	p.release(c)
	if !fitsNow(p, c) {
		t.Fatal("released capacity not reusable")
	}

	// --parallel overrides the CPU budget but not memory
	p = newPool(Options{Parallel: 3, HostCPUs: 2, HostMemoryMB: 5000})
	if !p.acquire(ctx, nil, c) || !p.acquire(ctx, nil, c) {
		t.Fatal("--parallel 3: two cells should fit")
	}
	if fitsNow(p, c) {
		t.Fatal("third 2 GiB cell fit into 5000 MB")
	}

	// a cell larger than the host still runs, alone
	big := cell
	big.Settings.CPUs, big.Settings.MemoryMB = 64, 1<<20
	p = newPool(Options{HostCPUs: 2, HostMemoryMB: 4096})
	if !p.acquire(ctx, nil, p.cost(big)) {
		t.Fatal("oversized cell never runs")
	}

	// stop ends a wait
	stop := make(chan struct{})
	close(stop)
	if p.acquire(ctx, stop, c) {
		t.Fatal("acquire after stop")
	}
}

func fitsNow(p *pool, c cost) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return p.acquire(ctx, nil, c)
}
