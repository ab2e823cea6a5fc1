package runner

import (
	"context"
	"fmt"

	"github.com/matrixctl/matrixctl/matrix"
)

// Prefetcher is a Provider that can fetch or build what a cell boots ahead
// of the cell's run. The runner prefetches the images of the cells still to
// run, one at a time in plan order, while the first cells run: on a fresh
// cache a slot then finds its kernel and rootfs ready instead of waiting for
// a download and a rootfs build. Prefetch must be safe beside Prepare of the
// same cell (the cache's build locks make it so) and its errors are not the
// cell's: Prepare meets them again and judges them.
type Prefetcher interface {
	Prefetch(ctx context.Context, c matrix.Cell) error
}

// prefetch starts prefetching the images of cells; the returned stop
// cancels what is left and waits for the one in progress to end.
func (r *run) prefetch(ctx context.Context, cells []matrix.Cell) (stop func()) {
	pf, ok := r.opts.Provider.(Prefetcher)
	if !ok {
		return func() {}
	}
	var todo []matrix.Cell
	seen := map[string]bool{}
	for _, c := range cells {
		key := fmt.Sprint(c.Kernel, c.Distro, c.Docker, c.Settings.Packages)
		if c.Status == matrix.StatusRunnable && !seen[key] {
			seen[key] = true
			todo = append(todo, c)
		}
	}
	if len(todo) < 2 {
		return func() {} // the first cell's own Prepare does it
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range todo {
			if ctx.Err() != nil {
				return
			}
			_ = pf.Prefetch(ctx, c)
		}
	}()
	return func() { cancel(); <-done }
}
