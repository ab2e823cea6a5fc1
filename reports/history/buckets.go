package history

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
)

// Long histories are read from a summary kept beside cell_runs: each
// cell's outcome per provider and day, and per provider and week, summed
// over the runs that started in that day or week. A trend of twenty weeks
// of nightly runs then reads 20 rows per cell instead of 140 runs' worth of
// cell_runs. Append adds a run to its day and week; Prune rebuilds the day
// and week its cutoff falls in; schema 3 built the summary of older files.
const bucketsSQL = `
CREATE TABLE IF NOT EXISTS cell_buckets (
	provider TEXT NOT NULL,
	size     INTEGER NOT NULL, -- nanoseconds: a day or a week
	start    INTEGER NOT NULL, -- unix nanoseconds (bucketStart)
	cell     TEXT NOT NULL,
	runs     INTEGER NOT NULL, -- stored runs that had the cell
	counted  INTEGER NOT NULL,
	passed   INTEGER NOT NULL,
	worst    INTEGER NOT NULL, -- index in results.VerdictOrder, 999: none
	PRIMARY KEY (provider, size, start, cell)
) WITHOUT ROWID;
`

// bucketSizes are the summary's bucket lengths.
var bucketSizes = []int64{int64(day), int64(week)}

// bucketSQL is the SQL for bucketOf's bucket start of the column col.
func bucketSQL(col string, size int64) string {
	off := fmt.Sprintf("(%s - %d)", col, bucketOrigin)
	return fmt.Sprintf("((%[1]s / %[2]d - (CASE WHEN %[1]s < 0 AND %[1]s %% %[2]d != 0 THEN 1 ELSE 0 END)) * %[2]d + %[3]d)",
		off, size, bucketOrigin)
}

// addBuckets sums the runs selected by where (a condition on runs r) into
// the summary's buckets of the given sizes: one row per provider, bucket
// and cell, whose runs, counted and passed add to a row already there and
// whose worst verdict is the worse of the two.
func addBuckets(ctx context.Context, tx *sql.Tx, sizes []int64, where string, args ...any) error {
	for _, size := range sizes {
		q := fmt.Sprintf(`INSERT INTO cell_buckets (provider, size, start, cell, runs, counted, passed, worst)
		SELECT provider, %[1]d, start, cell, COUNT(*), SUM(counted), SUM(passed), MIN(worst) FROM (
			SELECT r.provider AS provider, %[2]s AS start, c.cell AS cell, %[3]s
			FROM cell_runs c JOIN runs r ON r.run_id = c.run_id
			WHERE %[4]s
			GROUP BY c.run_id, c.cell)
		WHERE true GROUP BY provider, start, cell
		ON CONFLICT (provider, size, start, cell) DO UPDATE SET
			runs = runs + excluded.runs, counted = counted + excluded.counted,
			passed = passed + excluded.passed, worst = MIN(worst, excluded.worst)`,
			size, bucketSQL("r.started", size), outcomeSQL(), where)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	return nil
}

// rebuildBuckets makes the summary anew: all of it (cutoff zero) or, after
// the runs started before cutoff were deleted, the buckets up to the one
// the cutoff falls in, which lost some of its runs and is summed again
// from the runs left in it.
func rebuildBuckets(ctx context.Context, tx *sql.Tx, cutoff int64) error {
	if cutoff == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cell_buckets`); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
		return addBuckets(ctx, tx, bucketSizes, "true")
	}
	for _, size := range bucketSizes {
		from := bucketFloor(cutoff, size)
		if _, err := tx.ExecContext(ctx, `DELETE FROM cell_buckets WHERE size = ? AND start <= ?`, size, from); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
		if err := addBuckets(ctx, tx, []int64{size}, "r.started >= ? AND r.started < ?", from, from+size); err != nil {
			return err
		}
	}
	return nil
}

// fullBuckets is the set of buckets (by start) of the runs in starts that
// hold every stored run of provider in them: their summary rows are
// exactly the outcome of the selected runs. A bucket where the query left
// a run out (Exclude, Since, Before) is read run by run.
func (s *Store) fullBuckets(ctx context.Context, provider string, starts []int64, size int64) (map[int64]bool, error) {
	if len(starts) == 0 || s.noSummary {
		return nil, nil
	}
	selected := map[int64]int{}
	for _, st := range starts {
		selected[bucketFloor(st, size)]++
	}
	lo, hi := bucketFloor(starts[0], size), bucketFloor(starts[len(starts)-1], size)+size
	rows, err := s.db.QueryContext(ctx, `SELECT started FROM runs WHERE provider = ? AND started >= ? AND started < ?`,
		provider, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := map[int64]int{}
	for rows.Next() {
		var st int64
		if err := rows.Scan(&st); err != nil {
			return nil, err
		}
		stored[bucketFloor(st, size)]++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	full := map[int64]bool{}
	for b, n := range selected {
		if stored[b] == n {
			full[b] = true
		}
	}
	return full, nil
}

// bucketPoints reads the summary of the full buckets into per-cell points,
// oldest first.
func (s *Store) bucketPoints(ctx context.Context, provider string, size int64, full map[int64]bool) (map[string][]Point, error) {
	out := map[string][]Point{}
	if len(full) == 0 {
		return out, nil
	}
	starts := slices.Collect(maps.Keys(full))
	lo, hi := slices.Min(starts), slices.Max(starts)
	rows, err := s.db.QueryContext(ctx, `SELECT start, cell, runs, counted, passed, worst FROM cell_buckets
		WHERE provider = ? AND size = ? AND start >= ? AND start <= ? ORDER BY start, cell`, provider, size, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var p Point
		var start int64
		var worst int
		if err := rows.Scan(&start, &p.Cell, &p.Runs, &p.Counted, &p.Passed, &worst); err != nil {
			return nil, err
		}
		if !full[start] {
			continue
		}
		p.Started, p.Worst = fromNanos(start), worstVerdict(worst)
		out[p.Cell] = append(out[p.Cell], p)
	}
	return out, rows.Err()
}

// mergeBucketPoints adds the summary's points to a trend read run by run
// from the other buckets, keeping each cell's points in time order.
func mergeBucketPoints(trend, summary map[string][]Point) {
	for cell, pts := range summary {
		all := append(trend[cell], pts...)
		slices.SortStableFunc(all, func(a, b Point) int { return a.Started.Compare(b.Started) })
		trend[cell] = all
	}
}
