package runner

import "github.com/matrixctl/matrixctl/api/results"

// Progress receives progress events from Run. Implementations must be safe
// for concurrent use (cells run in parallel).
type Progress interface {
	// Planned is called once: total runs of the plan, of which done already finished.
	Planned(total, done int)
	// Phase is called when a run's attempt enters a phase.
	Phase(cell string, repeat, attempt int, phase string)
	// Done is called when a run has its final verdict.
	Done(run results.Run)
	// Close is called when no more events follow.
	Close()
}

type nopProgress struct{}

func (nopProgress) Planned(int, int)               {}
func (nopProgress) Phase(string, int, int, string) {}
func (nopProgress) Done(results.Run)               {}
func (nopProgress) Close()                         {}
