package history

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

func file(id string, started time.Time, verdicts ...results.Verdict) *results.File {
	f := &results.File{Schema: results.SchemaVersion, RunID: id, Spec: "matrix.yaml", Provider: "qemu", Started: started}
	for i, v := range verdicts {
		r := results.Run{Cell: "c1", Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2",
			Repeat: i + 1, Attempt: 1, Verdict: v, Started: started}
		if v == results.KernelCrash {
			r.Findings = []results.Finding{{Source: "console", Category: "kernel-panic", Severity: "fatal", Title: "panic in x"}}
		}
		f.Runs = append(f.Runs, r)
	}
	return f
}

func TestAppendIsIdempotentAndPointsAggregate(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "sub", FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	f1 := file("r1", t0, results.Pass, results.Pass, results.InfraError)
	f2 := file("r2", t0.Add(24*time.Hour), results.Pass, results.KernelCrash, results.ProbeFailure)
	for _, f := range []*results.File{f1, f2} {
		added, err := s.Append(ctx, f)
		if err != nil || !added {
			t.Fatalf("append %s: added %v, %v", f.RunID, added, err)
		}
	}
	added, err := s.Append(ctx, f1)
	if err != nil || added {
		t.Fatalf("second append of r1: added %v, %v; want a no-op", added, err)
	}
	pts, err := s.Points(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 {
		t.Fatalf("points = %+v", pts)
	}
	if p := pts[0]; p.RunID != "r1" || p.Counted != 2 || p.Passed != 2 || p.Worst != "" {
		t.Errorf("r1 point = %+v (infra errors must not count)", p)
	}
	if p := pts[1]; p.RunID != "r2" || p.Counted != 3 || p.Passed != 1 || p.Worst != results.KernelCrash {
		t.Errorf("r2 point = %+v", p)
	}
	recent, err := s.Points(ctx, t0.Add(time.Hour))
	if err != nil || len(recent) != 1 || recent[0].RunID != "r2" {
		t.Errorf("points since: %+v, %v", recent, err)
	}
	sigs, err := s.Signatures(ctx, time.Time{})
	if err != nil || len(sigs) != 1 || !sigs[0].FirstSeen.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("signatures: %+v, %v", sigs, err)
	}
	trend, err := s.Trend(ctx, "qemu", "c1", time.Time{})
	if err != nil || len(trend) != 2 {
		t.Errorf("trend: %+v, %v", trend, err)
	}
	runs, err := s.Runs(ctx)
	if err != nil || len(runs) != 2 {
		t.Errorf("runs: %v, %v", runs, err)
	}
}

// reopen closes s and opens the database at path again, as the next
// process would; the new store closes with the test.
func reopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, file("r1", time.Unix(100, 0), results.Pass)); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	runs, err := s.Runs(ctx)
	if err != nil || len(runs) != 1 {
		t.Errorf("runs after reopen: %v, %v", runs, err)
	}
	if _, err := s.Append(ctx, &results.File{}); err == nil {
		t.Error("append without run_id succeeded")
	}
}

// TestProvidersAreSeparateTrends: a Vagrant run and a QEMU run of the same
// four axes (the same cell ID) are two hosts, two trends.
func TestProvidersAreSeparateTrends(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	qemu1 := file("q1", t0, results.Pass)
	box := file("v1", t0.Add(time.Hour), results.KernelCrash)
	box.Provider = "vagrant"
	qemu2 := file("q2", t0.Add(2*time.Hour), results.Pass)
	for _, f := range []*results.File{qemu1, box, qemu2} {
		if _, err := s.Append(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		provider string
		want     []string // run IDs
	}{
		{"qemu", []string{"q1", "q2"}},
		{"vagrant", []string{"v1"}},
		{"local", nil},
	}
	for _, tt := range tests {
		trend, err := s.Trend(ctx, tt.provider, "c1", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range trend {
			if p.Provider != tt.provider {
				t.Errorf("%s trend holds a %s point %s", tt.provider, p.Provider, p.RunID)
			}
			got = append(got, p.RunID)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s trend = %v, want %v", tt.provider, got, tt.want)
		}
	}
}

// TestMigrateSchema1: a history written while the agent was the default
// init gets today's cell IDs for its QEMU runs, so an old agent run and a
// new systemd run of the same axes are never one cell; Vagrant runs keep
// theirs.
func TestMigrateSchema1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	const axes = "k6.1-debian12-docker20.10.24-overlay2"
	old := map[string]string{ // schema-1 ID → today's
		axes:                               axes + "-init-agent",
		axes + "-init-systemd":             axes,
		axes + "-init-systemd-cgroupv1":    axes + "-cgroupv1",
		axes + "-2":                        axes + "-init-agent-2",
		"my-own-id":                        "my-own-id",
		"k6.1-debian12-docker20.10.24-vfs": "k6.1-debian12-docker20.10.24-vfs", // other axes than its row: left alone
	}
	q := file("q1", t0, results.KernelCrash)
	q.Runs = nil
	for from := range old {
		q.Runs = append(q.Runs, results.Run{Cell: from, Kernel: "6.1", Distro: "debian12", Docker: "20.10.24", Driver: "overlay2",
			Repeat: 1, Attempt: 1, Verdict: results.KernelCrash, Started: t0,
			Findings: []results.Finding{{Source: "console", Category: "kernel-panic", Severity: "fatal", Title: "panic in x"}}})
	}
	box := file("v1", t0, results.Pass)
	box.Provider = "vagrant"
	box.Runs[0].Cell = axes
	for _, f := range []*results.File{q, box} {
		if _, err := s.Append(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec("PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	got := map[string]bool{}
	rows, err := s.db.Query("SELECT c.cell, r.provider FROM cell_runs c JOIN runs r ON r.run_id = c.run_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cell, provider string
		if err := rows.Scan(&cell, &provider); err != nil {
			t.Fatal(err)
		}
		got[provider+" "+cell] = true
	}
	rows.Close()
	want := map[string]bool{"vagrant " + axes: true}
	for _, to := range old {
		want["qemu "+to] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cells after migration:\n got %v\nwant %v", got, want)
	}
	var findings int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM findings WHERE cell = ?", axes+"-init-agent").Scan(&findings); err != nil || findings != 1 {
		t.Errorf("findings of the renamed cell: %d, %v; want 1", findings, err)
	}
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion {
		t.Errorf("user_version %d, %v; want %d", v, err, schemaVersion)
	}
}

// TestCellRuns: the stored runs come back with their axes, verdicts and
// findings, a console finding with source "console" (so kernel warnings
// still read as such), filtered by since.
func TestCellRuns(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	f1 := file("r1", t0, results.Pass, results.Pass)
	f1.Runs[1].Findings = []results.Finding{{Source: "console", Category: results.CatWarning, Severity: results.SevWarning,
		Title: "WARNING at fs/x.c"}}
	f2 := file("r2", t0.Add(24*time.Hour), results.KernelCrash)
	for _, f := range []*results.File{f1, f2} {
		if _, err := s.Append(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := s.CellRuns(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].RunID != "r1" || runs[2].RunID != "r2" || runs[2].Run.Verdict != results.KernelCrash ||
		runs[0].Run.Kernel != "6.1" || runs[0].Provider != "qemu" {
		t.Fatalf("cell runs = %+v", runs)
	}
	if w := runs[1].Run.KernelWarnings(); len(w) != 1 || w[0].Title != "WARNING at fs/x.c" {
		t.Errorf("r1 repeat 2 kernel warnings = %+v", w)
	}
	recent, err := s.CellRuns(ctx, t0.Add(time.Hour))
	if err != nil || len(recent) != 1 {
		t.Errorf("since: %d runs, %v", len(recent), err)
	}
}

// TestTrendsAggregateLongHistories: up to MaxPoints runs a trend has a
// point per run; a longer one is aggregated per day, then per week, in SQL,
// and the recent runs stay per run for regressions.
func TestTrendsAggregateLongHistories(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 6, 1, 1, 0, 0, 0, time.UTC) // a Monday
	// Two runs a day for 60 days; day 59's second run crashed.
	for d := range 60 {
		for k := range 2 {
			v := results.Pass
			if d == 59 && k == 1 {
				v = results.KernelCrash
			}
			st := t0.Add(time.Duration(d)*24*time.Hour + time.Duration(k)*6*time.Hour)
			if _, err := s.Append(ctx, file(fmt.Sprintf("d%02d-%d", d, k), st, v, results.Pass)); err != nil {
				t.Fatal(err)
			}
		}
	}
	other := file("vagrant-1", t0, results.ProbeFailure)
	other.Provider = "vagrant"
	if _, err := s.Append(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		q         TrendQuery
		runs      int
		bucket    string
		points    int
		lastRuns  int
		lastCount int
	}{
		{"per run", TrendQuery{Provider: "qemu", Since: t0.Add(55 * 24 * time.Hour), MaxPoints: 10}, 10, "run", 10, 1, 2},
		{"per day", TrendQuery{Provider: "qemu", Since: t0.Add(50 * 24 * time.Hour), MaxPoints: 10}, 20, "day", 10, 2, 4},
		{"per week", TrendQuery{Provider: "qemu", MaxPoints: 5}, 120, "week", 5, 8, 16}, // the last week: days 56–59
		{"before", TrendQuery{Provider: "qemu", Before: t0.Add(2 * 24 * time.Hour), MaxPoints: 10}, 4, "run", 4, 1, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := s.Trends(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			pts := tr.Trend["c1"]
			if tr.Runs != tt.runs || tr.Bucket != tt.bucket || len(pts) != tt.points {
				t.Fatalf("runs %d, bucket %q, %d points; want %d, %q, %d: %+v", tr.Runs, tr.Bucket, len(pts),
					tt.runs, tt.bucket, tt.points, pts)
			}
			last := pts[len(pts)-1]
			if last.Runs != tt.lastRuns || last.Counted != tt.lastCount {
				t.Errorf("last point = %+v, want %d runs, %d counted", last, tt.lastRuns, tt.lastCount)
			}
			if tt.q.Before.IsZero() && (last.Worst != results.KernelCrash || last.Passed != last.Counted-1) {
				t.Errorf("last point = %+v, want the crash of day 59", last)
			}
			recent := tr.Recent["c1"]
			if n := min(tt.runs, tt.q.MaxPoints); len(recent) != n || recent[len(recent)-1].Runs != 1 || recent[len(recent)-1].RunID == "" {
				t.Errorf("recent = %+v, want the last %d runs, one point each", recent, n)
			}
		})
	}
}

// TestPruneDeletesOldRunsAndShrinksTheFile runs against a real SQLite file:
// runs before the cutoff go with their cell runs and findings, the rest
// stay, and VACUUM gives the space back to the file system.
func TestPruneDeletesOldRunsAndShrinksTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	verdicts := make([]results.Verdict, 200)
	for i := range verdicts {
		verdicts[i] = results.Pass
	}
	verdicts[7] = results.KernelCrash
	for d := range 30 {
		if _, err := s.Append(ctx, file(fmt.Sprintf("n%02d", d), t0.Add(time.Duration(d)*24*time.Hour), verdicts...)); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := t0.Add(20 * 24 * time.Hour)
	p, err := s.Prune(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if p.Runs != 20 || p.CellRuns != 20*200 || p.Findings != 20 {
		t.Errorf("pruned %+v, want 20 runs, 4000 cell runs, 20 findings", p)
	}
	if p.After >= p.Before/2 {
		t.Errorf("database %d bytes before, %d after: VACUUM did not give the space back", p.Before, p.After)
	}
	runs, err := s.Runs(ctx)
	if err != nil || len(runs) != 10 || runs[0] != "n20" {
		t.Errorf("runs after pruning = %v, %v; want n20…n29", runs, err)
	}
	sigs, err := s.Signatures(ctx, time.Time{})
	if err != nil || len(sigs) != 1 || !sigs[0].FirstSeen.Equal(cutoff) {
		t.Errorf("signatures after pruning = %+v, %v; want first seen at the cutoff", sigs, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > p.After {
		t.Errorf("file is %d bytes after close, the database %d", st.Size(), p.After)
	}
	if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
		t.Errorf("write-ahead log left at %d bytes", wal.Size())
	}
	// Nothing older left to prune: a no-op.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, err := s.Prune(ctx, cutoff); err != nil || p.Runs != 0 {
		t.Errorf("second prune = %+v, %v; want nothing removed", p, err)
	}
}
