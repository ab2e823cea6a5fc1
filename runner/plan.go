package runner

import (
	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// newPlan is results.json's plan of a run: the cells it runs (selected
// with their repeats, or unsupported with the reason) and the spec's cells
// it leaves out (opts.NotSelected), in that order.
func newPlan(cells []matrix.Cell, opts Options) *results.Plan {
	p := &results.Plan{Adaptive: opts.Budget.Active(), Shard: opts.Shard,
		Cells: make([]results.PlanCell, 0, len(cells)+len(opts.NotSelected))}
	for _, c := range cells {
		pc := results.PlanCell{Cell: c.ID, Kernel: c.Kernel.Version, Distro: c.Distro.Name, Docker: c.Docker.Version,
			Driver: c.Driver, Status: results.PlanSelected}
		switch {
		case c.Status == matrix.StatusUnsupported:
			pc.Status, pc.Reason = results.PlanUnsupported, c.Reason
		case !p.Adaptive:
			pc.Repeats = plannedRepeats(opts, c)
		}
		p.Cells = append(p.Cells, pc)
	}
	p.Cells = append(p.Cells, opts.NotSelected...)
	return p
}

// refreshPlan makes the plan's repeats those this execution runs: a
// resumed run may be given another --repeat.
func (r *run) refreshPlan() {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.file.Plan
	if p == nil || p.Adaptive {
		return
	}
	byID := make(map[string]int, len(r.cells))
	for i, c := range r.cells {
		byID[c.ID] = i
	}
	for i := range p.Cells {
		pc := &p.Cells[i]
		if j, ok := byID[pc.Cell]; ok && pc.Status == results.PlanSelected {
			pc.Repeats = r.repeats(r.cells[j])
		}
	}
}

// newETAModel sizes the progress estimate for this run's cells: the soak
// and probes of its first runnable cell, the slots pool gives such cells.
func (r *run) newETAModel(p *pool) *etaModel {
	for _, c := range r.cells {
		if c.Status == matrix.StatusUnsupported {
			continue
		}
		soak := r.opts.Soak
		if soak == 0 {
			soak = c.Settings.Soak
		}
		return newETAModel(r.opts.Timing, soak, len(c.Settings.Probes), p.slots(p.cost(c)))
	}
	return newETAModel(r.opts.Timing, 0, 1, 1)
}
