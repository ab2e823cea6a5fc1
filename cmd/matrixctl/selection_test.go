package main

import (
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

// TestSelectCellsNamesWhyCellsAreLeftOut: every cell of the spec is either
// selected or left out with the flags or the shard that did it.
func TestSelectCellsNamesWhyCellsAreLeftOut(t *testing.T) {
	sel := cellSelection{kernel: []string{"6.1"}, driver: []string{"overlay2,vfs"}, shard: "1/2"}
	cells, left, err := sel.selectCells(exampleSpec)
	if err != nil {
		t.Fatal(err)
	}
	all, err := (&cellSelection{}).load(exampleSpec)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells)+len(left) != len(all) || len(cells) == 0 {
		t.Fatalf("%d selected + %d left out, want the spec's %d cells", len(cells), len(left), len(all))
	}
	seen := map[string]bool{}
	for _, c := range cells {
		seen[c.ID] = true
	}
	shards := 0
	for _, pc := range left {
		if seen[pc.Cell] {
			t.Errorf("%s both selected and left out", pc.Cell)
		}
		seen[pc.Cell] = true
		switch pc.Status {
		case results.PlanFiltered:
			if pc.Kernel != "6.1" && !strings.Contains(pc.Reason, "--kernel 6.1") {
				t.Errorf("%s (kernel %s): reason %q does not name --kernel", pc.Cell, pc.Kernel, pc.Reason)
			}
			if pc.Driver != "overlay2" && pc.Driver != "vfs" && !strings.Contains(pc.Reason, "--driver overlay2,vfs") {
				t.Errorf("%s (driver %s): reason %q does not name --driver", pc.Cell, pc.Driver, pc.Reason)
			}
			if pc.Kernel == "6.1" && strings.Contains(pc.Reason, "--kernel") {
				t.Errorf("%s: blames --kernel, which selects it: %q", pc.Cell, pc.Reason)
			}
		case results.PlanOtherShard:
			shards++
			if pc.Reason != "in shard 2/2, not this shard 1/2" {
				t.Errorf("%s: shard reason %q", pc.Cell, pc.Reason)
			}
		default:
			t.Errorf("%s: status %s for a left-out cell", pc.Cell, pc.Status)
		}
	}
	if shards == 0 {
		t.Errorf("no cell in the other shard: %+v", left)
	}
	if len(seen) != len(all) {
		t.Errorf("%d distinct cells, want %d", len(seen), len(all))
	}
}
