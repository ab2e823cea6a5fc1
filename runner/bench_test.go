package runner

import (
	"context"
	"fmt"
	"testing"

	"github.com/matrixctl/matrixctl/matrix"
)

// BenchmarkRunnerOverhead measures what the runner itself costs per run of
// a cell (journal records with fsync, atomic results.json rewrites, artifact
// files, verdict judgement) with a machine that does nothing. The figures
// the project tracks against real VMs (per-phase time of a cell against a
// hand-built QEMU boot, and --parallel scaling) need real boots and are not
// measured here.
func BenchmarkRunnerOverhead(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("cells=%d", n), func(b *testing.B) {
			var cells []matrix.Cell
			for i := range n {
				cells = append(cells, testCell(fmt.Sprintf("c%d", i)))
			}
			for b.Loop() {
				fake := newFake(nil)
				if _, err := Run(context.Background(), cells, Options{Provider: fake, Prober: fakeProber{fake}, Out: b.TempDir(), Parallel: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e6, "ms/run")
		})
	}
}
