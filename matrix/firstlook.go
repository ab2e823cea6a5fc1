package matrix

import (
	"slices"
	"time"
)

// First-look settings: short enough that a first run of the example fits in
// minutes on a 2-core host without KVM (two 1-vCPU cells at once), long
// enough that the IO probe does real work. Only the IO probe runs (when the
// cell has it): it is the one that exercises the storage driver and checks
// the data, while the network and churn probes' container starts take a
// minute and more in a 1-vCPU TCG guest (measured: 170 s of probe phase for
// a 10 s soak of all three in a first-look run).
const (
	FirstLookProbe    = "io"
	FirstLookSoak     = 10 * time.Second
	FirstLookCPUs     = 1
	FirstLookMemoryMB = 1024
)

// FirstLook picks, from cells, the fewest runnable cells that together touch
// every kernel line, distro and storage driver among the runnable cells, so
// a first run says something about each of them in a fraction of the time.
// Unsupported cells are kept (they cost nothing and say why they cannot
// run). The cover is greedy (each step takes the cell that touches the most
// values not yet touched; ties go to the earlier cell) and preferably uses
// cells with no pending kernel checks, which may still turn out unsupported.
// Cells keep their order. The picked cells run once each with the
// first-look probe, soak, vCPUs and memory.
func FirstLook(cells []Cell) []Cell {
	type value struct{ axis, v string }
	valuesOf := func(c Cell) []value {
		return []value{{"kernel", c.Kernel.Version}, {"distro", c.Distro.Name}, {"driver", c.Driver}}
	}
	need := map[value]bool{}
	for _, c := range cells {
		if c.Status == StatusRunnable {
			for _, v := range valuesOf(c) {
				need[v] = true
			}
		}
	}
	picked := make([]bool, len(cells))
	for len(need) > 0 {
		best, bestScore := -1, 0
		for i, c := range cells {
			if picked[i] || c.Status != StatusRunnable {
				continue
			}
			score := 0
			for _, v := range valuesOf(c) {
				if need[v] {
					score += 2
				}
			}
			if score > 0 && len(c.Pending) == 0 {
				score++ // certain to boot
			}
			if score > bestScore {
				best, bestScore = i, score
			}
		}
		if best < 0 {
			break
		}
		picked[best] = true
		for _, v := range valuesOf(cells[best]) {
			delete(need, v)
		}
	}
	var out []Cell
	for i, c := range cells {
		if picked[i] {
			c.Settings.Soak, c.Settings.Repeats = min(c.Settings.Soak, FirstLookSoak), 1
			c.Settings.CPUs, c.Settings.MemoryMB = min(c.Settings.CPUs, FirstLookCPUs), min(c.Settings.MemoryMB, FirstLookMemoryMB)
			if slices.Contains(c.Settings.Probes, FirstLookProbe) {
				c.Settings.Probes = []string{FirstLookProbe}
			}
		}
		if picked[i] || c.Status != StatusRunnable {
			out = append(out, c)
		}
	}
	return out
}
