package history

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// timingSQL keeps how long the runs of each stored run took, and each of
// their phases: the seed of a later run's progress estimate. It is its own
// table, created on first use, so stores of every schema version have it.
const timingSQL = `
CREATE TABLE IF NOT EXISTS run_times (
	run_id   TEXT NOT NULL REFERENCES runs(run_id),
	provider TEXT NOT NULL,
	cell     TEXT NOT NULL,
	repeat   INTEGER NOT NULL,
	phase    TEXT NOT NULL, -- '' for the whole run
	duration INTEGER NOT NULL, -- nanoseconds
	PRIMARY KEY (run_id, cell, repeat, phase)
);
CREATE INDEX IF NOT EXISTS run_times_provider ON run_times(provider);
`

// timingRuns is how many of a provider's latest stored runs Timing reads.
const timingRuns = 20

// Timing is what the runs of earlier runs of one provider took: the median
// duration of each phase and of a whole run over the runs that booted.
type Timing struct {
	Phases map[string]time.Duration
	Run    time.Duration
	// Runs is the number of cell runs the medians are over.
	Runs int
}

// AppendTimes records the durations of f's runs and of their phases (runs
// that never booted, like unsupported ones, have no phases and are left
// out). Recording a run twice changes nothing.
func (s *Store) AppendTimes(ctx context.Context, f *results.File) error {
	if _, err := s.db.ExecContext(ctx, timingSQL); err != nil {
		return fmt.Errorf("history: run times: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: run times: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO run_times VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("history: run times: %w", err)
	}
	defer stmt.Close()
	for _, r := range f.Runs {
		if len(r.Phases) == 0 || !r.Finished.After(r.Started) {
			continue
		}
		if _, err := stmt.ExecContext(ctx, f.RunID, f.Provider, r.Cell, r.Repeat, "", int64(r.Finished.Sub(r.Started))); err != nil {
			return fmt.Errorf("history: run times: %w", err)
		}
		for _, p := range r.Phases {
			if p.Name == "" || p.Duration <= 0 {
				continue
			}
			if _, err := stmt.ExecContext(ctx, f.RunID, f.Provider, r.Cell, r.Repeat, p.Name, int64(p.Duration)); err != nil {
				return fmt.Errorf("history: run times: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: run times: %w", err)
	}
	return nil
}

// Timing returns the medians over the cell runs of provider's latest
// timingRuns stored runs (zero Timing when there are none).
func (s *Store) Timing(ctx context.Context, provider string) (Timing, error) {
	if _, err := s.db.ExecContext(ctx, timingSQL); err != nil {
		return Timing{}, fmt.Errorf("history: timing: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT phase, duration FROM run_times WHERE provider = ? AND run_id IN
		(SELECT run_id FROM runs WHERE provider = ? ORDER BY started DESC LIMIT ?)`, provider, provider, timingRuns)
	if err != nil {
		return Timing{}, fmt.Errorf("history: timing: %w", err)
	}
	defer rows.Close()
	byPhase := map[string][]time.Duration{}
	for rows.Next() {
		var phase string
		var d int64
		if err := rows.Scan(&phase, &d); err != nil {
			return Timing{}, fmt.Errorf("history: timing: %w", err)
		}
		byPhase[phase] = append(byPhase[phase], time.Duration(d))
	}
	if err := rows.Err(); err != nil {
		return Timing{}, fmt.Errorf("history: timing: %w", err)
	}
	t := Timing{Runs: len(byPhase[""])}
	if t.Runs == 0 {
		return Timing{}, nil
	}
	t.Run = medianDuration(byPhase[""])
	delete(byPhase, "")
	t.Phases = map[string]time.Duration{}
	for name, ds := range byPhase {
		t.Phases[name] = medianDuration(ds)
	}
	return t, nil
}

func medianDuration(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
