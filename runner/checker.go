package runner

import (
	"context"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/runner/fscheck"
)

// FSChecker is the Checker that runs the filesystem's own checker through
// runner/fscheck.
func FSChecker() Checker {
	return CheckerFunc(func(ctx context.Context, s Scratch) (*results.Checker, error) {
		return fscheck.Check(ctx, s.Path, s.FS)
	})
}
