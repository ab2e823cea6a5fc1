package main

import (
	"fmt"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// maxShardLookup bounds the shards searched for a left-out cell's own
// shard; beyond it the plan only says the cell is not in this one.
const maxShardLookup = 64

// selectCells reads the spec, plans it and applies the selection: the
// selected cells, and the spec's other cells with the reason each was left
// out (the filter flags that reject it, or its shard) for results.json's
// plan. Spec, filter and shard problems are usage errors (exit 2).
func (s *cellSelection) selectCells(file string) ([]matrix.Cell, []results.PlanCell, error) {
	spec, err := matrix.Load(file)
	if err != nil {
		return nil, nil, withExit(ExitUsage, err)
	}
	all, err := spec.Plan()
	if err != nil {
		return nil, nil, withExit(ExitUsage, err)
	}
	cells := all
	why := map[string]results.PlanCell{}
	f := s.filter()
	if !f.Empty() {
		if cells, err = f.Apply(all); err != nil {
			return nil, nil, withExit(ExitUsage, err)
		}
		if err := filterReasons(f, all, cells, why); err != nil {
			return nil, nil, withExit(ExitUsage, err)
		}
	}
	if s.shard != "" {
		i, n, err := matrix.ParseShard(s.shard)
		if err != nil {
			return nil, nil, withExit(ExitUsage, err)
		}
		filtered := cells
		if cells, err = matrix.Shard(filtered, i, n); err != nil {
			return nil, nil, withExit(ExitUsage, err)
		}
		if err := shardReasons(filtered, cells, i, n, why); err != nil {
			return nil, nil, withExit(ExitUsage, err)
		}
	}
	var left []results.PlanCell
	for _, c := range all {
		if pc, ok := why[c.ID]; ok {
			left = append(left, pc)
		}
	}
	return cells, left, nil
}

// filter is the selection's matrix.Filter.
func (s *cellSelection) filter() matrix.Filter {
	return matrix.Filter{
		Kernel: matrix.SplitFlagValues(s.kernel),
		Distro: matrix.SplitFlagValues(s.distro),
		Docker: matrix.SplitFlagValues(s.docker),
		Driver: matrix.SplitFlagValues(s.driver),
		Cell:   matrix.SplitFlagValues(s.cell),
		Init:   matrix.SplitFlagValues(s.init),
		Cgroup: matrix.SplitFlagValues(s.cgroup),
	}
}

// leftOut is a plan entry of a cell this run does not run.
func leftOut(c matrix.Cell, status results.PlanStatus, reason string) results.PlanCell {
	return results.PlanCell{Cell: c.ID, Kernel: c.Kernel.Version, Distro: c.Distro.Name, Docker: c.Docker.Version,
		Driver: c.Driver, Status: status, Reason: reason}
}

// filterReasons names, for each cell of all that f left out, the flags
// that reject it: each flag on its own is a filter.
func filterReasons(f matrix.Filter, all, kept []matrix.Cell, why map[string]results.PlanCell) error {
	in := idSet(kept)
	flags := []struct {
		name   string
		values []string
		only   matrix.Filter
	}{
		{"kernel", f.Kernel, matrix.Filter{Kernel: f.Kernel}},
		{"distro", f.Distro, matrix.Filter{Distro: f.Distro}},
		{"docker", f.Docker, matrix.Filter{Docker: f.Docker}},
		{"driver", f.Driver, matrix.Filter{Driver: f.Driver}},
		{"cell", f.Cell, matrix.Filter{Cell: f.Cell}},
		{"init", f.Init, matrix.Filter{Init: f.Init}},
		{"cgroup", f.Cgroup, matrix.Filter{Cgroup: f.Cgroup}},
	}
	reasons := map[string][]string{}
	for _, fl := range flags {
		if len(fl.values) == 0 {
			continue
		}
		match, err := fl.only.Apply(all)
		if err != nil {
			return err
		}
		ok := idSet(match)
		for _, c := range all {
			if !in[c.ID] && !ok[c.ID] {
				reasons[c.ID] = append(reasons[c.ID], fmt.Sprintf("--%s %s", fl.name, strings.Join(fl.values, ",")))
			}
		}
	}
	for _, c := range all {
		if !in[c.ID] {
			why[c.ID] = leftOut(c, results.PlanFiltered, "filtered out by "+strings.Join(reasons[c.ID], " and "))
		}
	}
	return nil
}

// shardReasons names the shard of each cell of filtered that shard i of n
// left out (up to maxShardLookup shards).
func shardReasons(filtered, kept []matrix.Cell, i, n int, why map[string]results.PlanCell) error {
	in := idSet(kept)
	shardOf := map[string]int{}
	if n <= maxShardLookup {
		for j := 1; j <= n; j++ {
			if j == i {
				continue
			}
			cs, err := matrix.Shard(filtered, j, n)
			if err != nil {
				return err
			}
			for _, c := range cs {
				shardOf[c.ID] = j
			}
		}
	}
	for _, c := range filtered {
		if in[c.ID] {
			continue
		}
		reason := fmt.Sprintf("not in shard %d/%d", i, n)
		if j := shardOf[c.ID]; j > 0 {
			reason = fmt.Sprintf("in shard %d/%d, not this shard %d/%d", j, n, i, n)
		}
		why[c.ID] = leftOut(c, results.PlanOtherShard, reason)
	}
	return nil
}

func idSet(cells []matrix.Cell) map[string]bool {
	m := make(map[string]bool, len(cells))
	for _, c := range cells {
		m[c.ID] = true
	}
	return m
}

// leftByFirstLook are the plan entries of the cells --first-look did not pick.
func leftByFirstLook(all, picked []matrix.Cell) []results.PlanCell {
	in := idSet(picked)
	var left []results.PlanCell
	for _, c := range all {
		if !in[c.ID] {
			left = append(left, leftOut(c, results.PlanFiltered,
				"left out by --first-look: other cells cover its kernel line, distro and driver"))
		}
	}
	return left
}
