package qemu

import (
	"context"
	"io"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
)

var _ runner.Prefetcher = (*Provider)(nil)

// Prefetch implements runner.Prefetcher: it fetches the cell's kernel and
// builds its rootfs into the cache, as Prepare would, without a run.
func (p *Provider) Prefetch(ctx context.Context, c matrix.Cell) error {
	if _, err := p.Cache.Kernel(ctx, c.Kernel); err != nil {
		return err
	}
	_, err := p.Cache.RootfsWith(ctx, c.Distro, c.Docker, c.Settings.Packages, io.Discard)
	return err
}
