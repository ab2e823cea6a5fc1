// Package history is the SQLite store (modernc.org/sqlite, no cgo) of past
// matrixctl runs: every `matrixctl run` appends its results.json, and
// reports read each cell's trend, regressions and first-seen dates from it.
//
// Lifecycle: Open creates the file and schema if needed; the caller closes
// the Store. Append is idempotent per run_id: appending the same run again
// is a no-op, so a retried nightly job cannot count a run twice. All
// methods are safe for concurrent use (SQLite serialises writers; a busy
// timeout waits for other processes).
//
// The default location is DefaultPath(cacheDir): <cache dir>/history.db,
// where the cache dir is matrixctl's --cache (env MATRIXCTL_CACHE).
package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// FileName is the history database's name inside the cache directory.
const FileName = "history.db"

// DefaultPath is the history database under matrixctl's cache directory.
func DefaultPath(cacheDir string) string { return filepath.Join(cacheDir, FileName) }

// schemaVersion is kept in PRAGMA user_version. Version 2 renamed the
// cells of version-1 QEMU runs to today's cell IDs (migrateInitDefault);
// version 3 added the per-day and per-week summary (cell_buckets).
const schemaVersion = 3

const schemaSQL = `
CREATE TABLE IF NOT EXISTS runs (
	run_id    TEXT PRIMARY KEY,
	spec      TEXT NOT NULL,
	spec_hash TEXT NOT NULL,
	host      TEXT NOT NULL,
	provider  TEXT NOT NULL,
	started   INTEGER NOT NULL, -- unix nanoseconds
	finished  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cell_runs (
	run_id  TEXT NOT NULL REFERENCES runs(run_id),
	cell    TEXT NOT NULL,
	repeat  INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	kernel  TEXT NOT NULL,
	distro  TEXT NOT NULL,
	docker  TEXT NOT NULL,
	driver  TEXT NOT NULL,
	verdict TEXT NOT NULL,
	reason  TEXT NOT NULL,
	started INTEGER NOT NULL,
	PRIMARY KEY (run_id, cell, repeat, attempt)
);
CREATE INDEX IF NOT EXISTS cell_runs_cell ON cell_runs(cell);
CREATE TABLE IF NOT EXISTS findings (
	run_id   TEXT NOT NULL REFERENCES runs(run_id),
	cell     TEXT NOT NULL,
	repeat   INTEGER NOT NULL,
	category TEXT NOT NULL,
	title    TEXT NOT NULL,
	severity TEXT NOT NULL,
	started  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_sig ON findings(category, title);
CREATE INDEX IF NOT EXISTS findings_run ON findings(run_id);
CREATE INDEX IF NOT EXISTS runs_provider_started ON runs(provider, started);
`

// Store is an open history database.
type Store struct {
	db *sql.DB
	// noSummary makes Trends read every run from cell_runs, as it did
	// before the summary: tests compare the two.
	noSummary bool
}

// Open opens (creating if needed) the history database at path.
func Open(path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("history %q: want a file path without ? or #", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init() error {
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this matrixctl (%d)", v, schemaVersion)
	}
	if _, err := s.db.Exec(schemaSQL + bucketsSQL); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if v == 1 {
		if err := s.migrateInitDefault(); err != nil {
			return fmt.Errorf("migrate schema 1 to 2: %w", err)
		}
	}
	if v > 0 && v < 3 {
		if err := s.buildSummary(); err != nil {
			return fmt.Errorf("migrate schema %d to 3: %w", v, err)
		}
	}
	_, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion))
	return err
}

// buildSummary sums every stored run into cell_buckets.
func (s *Store) buildSummary() error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := rebuildBuckets(ctx, tx, 0); err != nil {
		return err
	}
	return tx.Commit()
}

// migrateInitDefault renames the cells of QEMU runs stored by schema 1, when
// a cell without an init setting booted the agent as PID 1 and carried no
// init suffix, while an init: systemd cell carried "-init-systemd". Since
// then the distro's systemd is the default: left as they were, an old agent
// run and a new systemd run would share one cell ID, and the history would
// compare two different hosts. So an old "<axes>-init-systemd..." becomes
// "<axes>..." and an old "<axes>..." without an init suffix becomes
// "<axes>-init-agent...". <axes> is rebuilt from the row's own kernel,
// distro, docker and driver columns; a cell ID that does not start with it
// is left alone. Runs of other providers are left alone too: a Vagrant box
// always booted its own systemd.
func (s *Store) migrateInitDefault() error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT DISTINCT c.run_id, c.cell, c.kernel, c.distro, c.docker, c.driver
		FROM cell_runs c JOIN runs r ON r.run_id = c.run_id WHERE r.provider = 'qemu'`)
	if err != nil {
		return err
	}
	type rename struct{ run, from, to string }
	var renames []rename
	for rows.Next() {
		var run, cell, kernel, distro, docker, driver string
		if err := rows.Scan(&run, &cell, &kernel, &distro, &docker, &driver); err != nil {
			rows.Close()
			return err
		}
		if to, ok := schema1CellID(cell, kernel, distro, docker, driver); ok && to != cell {
			renames = append(renames, rename{run, cell, to})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range renames {
		for _, table := range []string{"cell_runs", "findings"} {
			if _, err := tx.Exec(`UPDATE `+table+` SET cell = ? WHERE run_id = ? AND cell = ?`, r.to, r.run, r.from); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// schema1CellID maps a schema-1 QEMU cell ID to today's (migrateInitDefault).
func schema1CellID(cell, kernel, distro, docker, driver string) (string, bool) {
	axes := unsafeIDChars.ReplaceAllString(fmt.Sprintf("k%s-%s-docker%s-%s", kernel, distro, docker, driver), "_")
	rest, ok := strings.CutPrefix(cell, axes)
	if !ok || (rest != "" && rest[0] != '-') {
		return "", false
	}
	switch {
	case strings.HasPrefix(rest, "-init-systemd"):
		return axes + strings.TrimPrefix(rest, "-init-systemd"), true
	case strings.HasPrefix(rest, "-init-"):
		return cell, true
	default:
		return axes + "-init-agent" + rest, true
	}
}

// unsafeIDChars is what matrix.CellID replaces with "_".
var unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Append records f. It reports whether the run was new; a run_id already in
// the store is left untouched (Append is idempotent).
func (s *Store) Append(ctx context.Context, f *results.File) (added bool, err error) {
	if f.RunID == "" {
		return false, errors.New("history: append: run_id is empty")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)`,
		f.RunID, f.Spec, f.SpecHash, f.Host, f.Provider, nanos(f.Started), nanos(f.Finished))
	if err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, tx.Rollback()
	}
	runStmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO cell_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	defer runStmt.Close()
	findStmt, err := tx.PrepareContext(ctx, `INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	defer findStmt.Close()
	for i, r := range f.Runs {
		started := r.Started
		if started.IsZero() {
			started = f.Started
		}
		if _, err = runStmt.ExecContext(ctx, f.RunID, r.Cell, r.Repeat, r.Attempt, r.Kernel, r.Distro, r.Docker,
			r.Driver, string(r.Verdict), r.Reason, nanos(started)); err != nil {
			return false, fmt.Errorf("history: append %s: runs[%d]: %w", f.RunID, i, err)
		}
		for _, fd := range r.Findings {
			if _, err = findStmt.ExecContext(ctx, f.RunID, r.Cell, r.Repeat, fd.Category, fd.Title, fd.Severity,
				nanos(started)); err != nil {
				return false, fmt.Errorf("history: append %s: runs[%d]: %w", f.RunID, i, err)
			}
		}
	}
	if err = addBuckets(ctx, tx, bucketSizes, "r.run_id = ?", f.RunID); err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	if err = tx.Commit(); err != nil {
		return false, fmt.Errorf("history: append %s: %w", f.RunID, err)
	}
	return true, nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Point is one cell's outcome in one stored run. Counted excludes
// infra-error and unsupported runs; Worst is the worst counted verdict
// other than pass (empty when all passed or none counted).
//
// A trend is the points of one (Provider, Cell): the provider is chosen on
// the command line, not in the spec, so the same cell ID on another
// provider (a Vagrant box, the local host) is another host, and its runs
// are never compared with QEMU's.
type Point struct {
	RunID    string
	Started  time.Time
	Provider string // the run's provider (results.File.Provider)
	Cell     string
	Counted  int
	Passed   int
	Worst    results.Verdict
	// Runs is the number of stored runs the point aggregates (Trends: a
	// day or a week of them); Points always gives one run per point.
	Runs int
}

// severityCase ranks verdicts in SQL by results.VerdictOrder (0 = worst).
func severityCase() string {
	s := "CASE verdict"
	for i, v := range results.VerdictOrder {
		s += fmt.Sprintf(" WHEN '%s' THEN %d", v, i)
	}
	return s + fmt.Sprintf(" ELSE %d END", len(results.VerdictOrder))
}

// noWorst is the worst-verdict index of an outcome with no counted failure.
const noWorst = 999

// outcomeSQL is a cell's outcome over the cell_runs rows of a group, as
// three aggregate columns named counted (neither infra-error nor unsupported),
// passed, and the worst counted failure's severity index (noWorst: none).
// Points, the per-run trends and the summary all count with it.
func outcomeSQL() string {
	return fmt.Sprintf(`SUM(CASE WHEN verdict IN ('infra-error', 'unsupported') THEN 0 ELSE 1 END) AS counted,
		SUM(CASE WHEN verdict = 'pass' THEN 1 ELSE 0 END) AS passed,
		MIN(CASE WHEN verdict IN ('pass', 'infra-error', 'unsupported') THEN %d ELSE %s END) AS worst`, noWorst, severityCase())
}

// worstVerdict is the verdict of a severity index read back from SQL
// (empty for noWorst).
func worstVerdict(i int) results.Verdict {
	if i >= 0 && i < len(results.VerdictOrder) {
		return results.VerdictOrder[i]
	}
	return ""
}

// Points returns every cell's outcome per stored run started at or after
// since (zero: all), ordered by run start, run ID and cell.
func (s *Store) Points(ctx context.Context, since time.Time) ([]Point, error) {
	q := `SELECT c.run_id, r.started, r.provider, c.cell, ` + outcomeSQL() + `
	FROM cell_runs c JOIN runs r ON r.run_id = c.run_id
	WHERE r.started >= ?
	GROUP BY c.run_id, c.cell
	ORDER BY r.started, c.run_id, c.cell`
	rows, err := s.db.QueryContext(ctx, q, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("history: points: %w", err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var p Point
		var started int64
		var worst int
		if err := rows.Scan(&p.RunID, &started, &p.Provider, &p.Cell, &p.Counted, &p.Passed, &worst); err != nil {
			return nil, fmt.Errorf("history: points: %w", err)
		}
		p.Started, p.Runs, p.Worst = fromNanos(started), 1, worstVerdict(worst)
		out = append(out, p)
	}
	return out, rows.Err()
}

// TrendQuery selects the past a report compares one run against.
type TrendQuery struct {
	Provider string    // only runs of this provider (a trend never mixes hosts)
	Since    time.Time // only runs started at or after (zero: all)
	Before   time.Time // only runs started before (zero: no bound)
	Exclude  string    // a run ID left out (the run being reported)
	// MaxPoints is the length of a trend (default 20). A history with more
	// runs than that is aggregated per day, and per week when it has more
	// days than that; the trend then covers the last MaxPoints days or weeks.
	MaxPoints int
}

// Trends is the past of every cell, read with a few aggregate queries
// however long the history is.
type Trends struct {
	// Runs is the number of past runs the query selected.
	Runs int
	// Bucket is what one trend point stands for: "run", "day" or "week".
	Bucket string
	// Recent is each cell's outcome in the last MaxPoints runs, per run,
	// oldest first: what regressions and fixes compare against.
	Recent map[string][]Point
	// Trend is each cell's trend, oldest first: Recent when the history
	// has at most MaxPoints runs, else one point per day or week (Point.Runs
	// runs aggregated, RunID empty, Started the bucket's start).
	Trend map[string][]Point
}

// Bucket lengths of aggregated trends.
const (
	day  = 24 * time.Hour
	week = 7 * day
)

// Trends reads the cells' past for a report (see TrendQuery).
func (s *Store) Trends(ctx context.Context, q TrendQuery) (*Trends, error) {
	if q.MaxPoints <= 0 {
		q.MaxPoints = 20
	}
	before := int64(math.MaxInt64)
	if !q.Before.IsZero() {
		before = nanos(q.Before)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, started FROM runs
		WHERE provider = ? AND started >= ? AND started < ? AND run_id != ? ORDER BY started, run_id`,
		q.Provider, nanos(q.Since), before, q.Exclude)
	if err != nil {
		return nil, fmt.Errorf("history: trends: %w", err)
	}
	var ids []string
	var starts []int64
	for rows.Next() {
		var id string
		var st int64
		if err := rows.Scan(&id, &st); err != nil {
			rows.Close()
			return nil, fmt.Errorf("history: trends: %w", err)
		}
		ids, starts = append(ids, id), append(starts, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: trends: %w", err)
	}
	t := &Trends{Runs: len(ids), Bucket: "run", Recent: map[string][]Point{}}
	recentFrom := max(0, len(ids)-q.MaxPoints)
	if len(ids) <= q.MaxPoints {
		t.Trend = t.Recent
		return t, s.trendPoints(ctx, ids, starts, trendSink{from: 0, out: t.Recent})
	}
	t.Bucket, t.Trend = "day", map[string][]Point{}
	size := int64(day)
	if distinctBuckets(starts, size) > q.MaxPoints {
		t.Bucket, size = "week", int64(week)
	}
	// The trend covers the last MaxPoints buckets: the runs from the first
	// of them on. One pass over the runs fills both the trend and the
	// recent runs (usually inside the trend's window).
	last := bucketOf(starts[len(starts)-1], size)
	from := sortSearch(starts, bucketStart(last-int64(q.MaxPoints)+1, size))
	// Buckets that hold every stored run come from the summary; the others
	// (where the query left runs out) are read run by run.
	full, err := s.fullBuckets(ctx, q.Provider, starts[from:], size)
	if err != nil {
		return nil, fmt.Errorf("history: trends: %w", err)
	}
	if err := s.trendPoints(ctx, ids, starts, trendSink{from: from, size: size, skip: full, out: t.Trend},
		trendSink{from: recentFrom, out: t.Recent}); err != nil {
		return nil, err
	}
	summary, err := s.bucketPoints(ctx, q.Provider, size, full)
	if err != nil {
		return nil, fmt.Errorf("history: trends: %w", err)
	}
	mergeBucketPoints(t.Trend, summary)
	return t, nil
}

// trendSink collects points per cell of the runs from index from on: one
// per run (size 0) or per bucket of size nanoseconds.
type trendSink struct {
	from int
	size int64
	skip map[int64]bool // buckets (by start) taken from the summary instead
	out  map[string][]Point
}

// wants tells whether the sink takes the run at index i that started at st.
func (k trendSink) wants(i int, st int64) bool {
	return i >= k.from && (k.skip == nil || !k.skip[bucketFloor(st, k.size)])
}

// add adds one run's outcome in one cell (a point with Runs 1).
func (k trendSink) add(p Point, started int64) {
	if k.size > 0 {
		p.RunID, p.Started = "", fromNanos(bucketFloor(started, k.size))
	}
	k.merge(p)
}

// merge appends p to its cell's points, or sums it into the cell's last
// point when both are the same bucket.
func (k trendSink) merge(p Point) {
	pts := k.out[p.Cell]
	n := len(pts)
	if k.size == 0 || n == 0 || !pts[n-1].Started.Equal(p.Started) {
		k.out[p.Cell] = append(pts, p)
		return
	}
	last := &pts[n-1]
	last.Runs += p.Runs
	last.Counted += p.Counted
	last.Passed += p.Passed
	if p.Worst != "" && (last.Worst == "" || severityIndex(p.Worst) < severityIndex(last.Worst)) {
		last.Worst = p.Worst
	}
}

// bucketOrigin is Monday 1970-01-05 00:00 UTC: days start at midnight UTC
// and weeks on Mondays.
const bucketOrigin = int64(4 * day)

// bucketOf numbers the bucket of size nanoseconds a start falls in.
func bucketOf(started, size int64) int64 {
	off := started - bucketOrigin
	b := off / size
	if off < 0 && off%size != 0 {
		b--
	}
	return b
}

// bucketStart is the start of bucket b.
func bucketStart(b, size int64) int64 { return b*size + bucketOrigin }

// bucketFloor is the start of the bucket of size nanoseconds t falls in.
func bucketFloor(t, size int64) int64 { return bucketStart(bucketOf(t, size), size) }

func distinctBuckets(starts []int64, size int64) int {
	n, prev := 0, int64(math.MinInt64)
	for _, st := range starts { // sorted
		if b := bucketOf(st, size); b != prev {
			n, prev = n+1, b
		}
	}
	return n
}

// sortSearch is the index of the first start at or after t (starts sorted).
func sortSearch(starts []int64, t int64) int {
	i, _ := slices.BinarySearch(starts, t)
	return i
}

// trendPoints reads the outcome per cell of the runs (sorted by start)
// that some sink wants, and hands it to those sinks. SQL aggregates each
// run's repeats per cell with one prepared statement that walks cell_runs
// in its primary key order (run_id, cell): no sort, one row per run and
// cell; the buckets are summed here.
func (s *Store) trendPoints(ctx context.Context, runIDs []string, starts []int64, sinks ...trendSink) error {
	var need []int // the runs some sink wants, in order
	for i := range runIDs {
		if slices.ContainsFunc(sinks, func(k trendSink) bool { return k.wants(i, starts[i]) }) {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return nil
	}
	stmt, err := s.db.PrepareContext(ctx, `SELECT cell, `+outcomeSQL()+`
	FROM cell_runs WHERE run_id = ? GROUP BY cell`)
	if err != nil {
		return fmt.Errorf("history: trends: %w", err)
	}
	defer stmt.Close()
	// Two readers (WAL lets them read at once) each take a contiguous half
	// of the runs into sinks of their own; the halves are merged in order.
	readers := min(2, runtime.GOMAXPROCS(0), len(need))
	parts := make([][]trendSink, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for w := range readers {
		lo, hi := len(need)*w/readers, len(need)*(w+1)/readers
		for _, k := range sinks {
			parts[w] = append(parts[w], trendSink{from: k.from, size: k.size, skip: k.skip, out: map[string][]Point{}})
		}
		wg.Go(func() {
			for _, i := range need[lo:hi] {
				var to []trendSink
				for _, k := range parts[w] {
					if k.wants(i, starts[i]) {
						to = append(to, k)
					}
				}
				if err := runPoints(ctx, stmt, runIDs[i], starts[i], to); err != nil {
					errs[w] = fmt.Errorf("history: trends: run %s: %w", runIDs[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, part := range parts {
		for j, k := range sinks {
			for _, pts := range part[j].out {
				for _, p := range pts {
					k.merge(p)
				}
			}
		}
	}
	return nil
}

// runPoints reads one run's outcome per cell into the sinks.
func runPoints(ctx context.Context, stmt *sql.Stmt, id string, started int64, sinks []trendSink) error {
	rows, err := stmt.QueryContext(ctx, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		p := Point{RunID: id, Started: fromNanos(started), Runs: 1}
		var worst int
		if err := rows.Scan(&p.Cell, &p.Counted, &p.Passed, &worst); err != nil {
			return err
		}
		p.Worst = worstVerdict(worst)
		for _, k := range sinks {
			k.add(p, started)
		}
	}
	return rows.Err()
}

// severityIndex is a verdict's place in results.VerdictOrder (0 = worst).
func severityIndex(v results.Verdict) int { return slices.Index(results.VerdictOrder, v) }

// Trend returns one cell's points on one provider since since, oldest first.
func (s *Store) Trend(ctx context.Context, provider, cell string, since time.Time) ([]Point, error) {
	all, err := s.Points(ctx, since)
	if err != nil {
		return nil, err
	}
	var out []Point
	for _, p := range all {
		if p.Provider == provider && p.Cell == cell {
			out = append(out, p)
		}
	}
	return out, nil
}

// SignatureSeen is when a finding (category + title) was first and last seen.
type SignatureSeen struct {
	Category  string
	Title     string
	Cells     int
	FirstSeen time.Time
	LastSeen  time.Time
}

// Signatures returns every stored finding signature seen since since.
func (s *Store) Signatures(ctx context.Context, since time.Time) ([]SignatureSeen, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT category, title, COUNT(DISTINCT cell), MIN(started), MAX(started)
		FROM findings WHERE started >= ? GROUP BY category, title ORDER BY category, title`, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("history: signatures: %w", err)
	}
	defer rows.Close()
	var out []SignatureSeen
	for rows.Next() {
		var sg SignatureSeen
		var first, last int64
		if err := rows.Scan(&sg.Category, &sg.Title, &sg.Cells, &first, &last); err != nil {
			return nil, fmt.Errorf("history: signatures: %w", err)
		}
		sg.FirstSeen, sg.LastSeen = fromNanos(first), fromNanos(last)
		out = append(out, sg)
	}
	return out, rows.Err()
}

// Runs returns the stored run IDs, oldest first.
func (s *Store) Runs(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id FROM runs ORDER BY started, run_id`)
	if err != nil {
		return nil, fmt.Errorf("history: runs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("history: runs: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// StoredRun is one stored run of a cell, with the run it belongs to.
type StoredRun struct {
	RunID    string
	Provider string
	Run      results.Run
}

// CellRuns returns every stored cell run started at or after since (zero:
// all), with its findings, ordered by run start, run ID, cell and repeat:
// the evidence of many nights for a decision (matrixctl recommend). The
// history keeps no finding source; a finding whose category is in the
// console category table is given source "console" (only the console
// scanner emits those categories besides the checker's fs errors, which
// decide a verdict either way), so results.KernelWarning reads it right.
func (s *Store) CellRuns(ctx context.Context, since time.Time) ([]StoredRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT c.run_id, r.provider, c.cell, c.repeat, c.attempt, c.kernel, c.distro,
		c.docker, c.driver, c.verdict, c.reason, c.started
		FROM cell_runs c JOIN runs r ON r.run_id = c.run_id
		WHERE r.started >= ? ORDER BY r.started, c.run_id, c.cell, c.repeat, c.attempt`, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("history: cell runs: %w", err)
	}
	defer rows.Close()
	var out []StoredRun
	index := map[[3]string]int{}
	for rows.Next() {
		var sr StoredRun
		var started int64
		r := &sr.Run
		if err := rows.Scan(&sr.RunID, &sr.Provider, &r.Cell, &r.Repeat, &r.Attempt, &r.Kernel, &r.Distro, &r.Docker,
			&r.Driver, &r.Verdict, &r.Reason, &started); err != nil {
			return nil, fmt.Errorf("history: cell runs: %w", err)
		}
		r.Started = fromNanos(started)
		index[[3]string{sr.RunID, r.Cell, fmt.Sprint(r.Repeat)}] = len(out)
		out = append(out, sr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: cell runs: %w", err)
	}
	frows, err := s.db.QueryContext(ctx, `SELECT run_id, cell, repeat, category, title, severity FROM findings
		WHERE started >= ? ORDER BY rowid`, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("history: cell runs: %w", err)
	}
	defer frows.Close()
	for frows.Next() {
		var runID, cell string
		var repeat int
		var fd results.Finding
		if err := frows.Scan(&runID, &cell, &repeat, &fd.Category, &fd.Title, &fd.Severity); err != nil {
			return nil, fmt.Errorf("history: cell runs: %w", err)
		}
		i, ok := index[[3]string{runID, cell, fmt.Sprint(repeat)}]
		if !ok {
			continue
		}
		if _, console := fd.Category.Info(); console {
			fd.Source = "console"
		}
		out[i].Run.Findings = append(out[i].Run.Findings, fd)
	}
	return out, frows.Err()
}

// Pruned is what Prune removed.
type Pruned struct {
	Runs, CellRuns, Findings int64
	// Before and After are the database file's size around the VACUUM.
	Before, After int64
}

// Prune deletes the runs started before cutoff, with their cell runs and
// findings, then VACUUMs so the file shrinks: the retention that keeps a
// nightly history bounded (matrixctl history prune --older-than).
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (Pruned, error) {
	var p Pruned
	var err error
	if p.Before, err = s.size(ctx); err != nil {
		return p, fmt.Errorf("history: prune: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return p, fmt.Errorf("history: prune: %w", err)
	}
	defer tx.Rollback()
	old := `SELECT run_id FROM runs WHERE started < ?`
	for _, d := range []struct {
		n     *int64
		query string
	}{
		{&p.Findings, `DELETE FROM findings WHERE run_id IN (` + old + `)`},
		{&p.CellRuns, `DELETE FROM cell_runs WHERE run_id IN (` + old + `)`},
		{&p.Runs, `DELETE FROM runs WHERE started < ?`},
	} {
		res, err := tx.ExecContext(ctx, d.query, nanos(cutoff))
		if err != nil {
			return p, fmt.Errorf("history: prune: %w", err)
		}
		*d.n, _ = res.RowsAffected()
	}
	if !cutoff.IsZero() {
		if err := rebuildBuckets(ctx, tx, nanos(cutoff)); err != nil {
			return p, fmt.Errorf("history: prune: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return p, fmt.Errorf("history: prune: %w", err)
	}
	// VACUUM rewrites the file without the freed pages; the checkpoint
	// folds the write-ahead log back so the -wal file shrinks too.
	for _, q := range []string{`VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return p, fmt.Errorf("history: prune: %s: %w", q, err)
		}
	}
	if p.After, err = s.size(ctx); err != nil {
		return p, fmt.Errorf("history: prune: %w", err)
	}
	return p, nil
}

// size is the database's size in bytes (pages × page size).
func (s *Store) size(ctx context.Context) (int64, error) {
	var pages, pageSize int64
	if err := s.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := s.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return 0, err
	}
	return pages * pageSize, nil
}
