package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// randomHistory appends n runs of three cells over about ten weeks, at
// random hours, with random verdicts, on two providers.
func randomHistory(t *testing.T, s *Store, rng *rand.Rand, t0 time.Time, n int) []*results.File {
	t.Helper()
	verdicts := []results.Verdict{results.Pass, results.Pass, results.Pass, results.InfraError, results.Unsupported,
		results.ProbeFailure, results.KernelCrash, results.FSCorruption}
	var files []*results.File
	for i := range n {
		st := t0.Add(time.Duration(rng.IntN(70*24)) * time.Hour)
		f := &results.File{Schema: results.SchemaVersion, RunID: fmt.Sprintf("r%03d", i), Provider: "qemu", Started: st}
		if rng.IntN(5) == 0 {
			f.Provider = "vagrant"
		}
		for c := range 3 {
			if rng.IntN(4) == 0 { // not every run has every cell
				continue
			}
			for rep := range 1 + rng.IntN(3) {
				f.Runs = append(f.Runs, results.Run{Cell: fmt.Sprintf("c%d", c), Repeat: rep + 1, Attempt: 1,
					Verdict: verdicts[rng.IntN(len(verdicts))], Started: st})
			}
		}
		if _, err := s.Append(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// TestTrendsFromSummaryEqualRunByRun checks the per-day and per-week
// summary against reading every run: for random histories, queries that
// leave runs out of a bucket (Since, Before, Exclude) or not, on both
// providers, before and after a prune, the trends are the same.
func TestTrendsFromSummaryEqualRunByRun(t *testing.T) {
	ctx := context.Background()
	for seed := range 4 {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			s, err := Open(filepath.Join(t.TempDir(), FileName))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			t0 := time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC)
			files := randomHistory(t, s, rng, t0, 150)
			compare := func(stage string) {
				t.Helper()
				for range 30 {
					q := TrendQuery{Provider: []string{"qemu", "vagrant"}[rng.IntN(2)], MaxPoints: 3 + rng.IntN(20)}
					if rng.IntN(2) == 0 {
						q.Since = t0.Add(time.Duration(rng.IntN(70*24)) * time.Hour)
					}
					if rng.IntN(2) == 0 {
						q.Before = t0.Add(time.Duration(rng.IntN(70*24)) * time.Hour)
					}
					if rng.IntN(2) == 0 {
						q.Exclude = files[rng.IntN(len(files))].RunID
					}
					s.noSummary = true
					want, err := s.Trends(ctx, q)
					s.noSummary = false
					if err != nil {
						t.Fatal(err)
					}
					got, err := s.Trends(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%s: %+v:\n%s", stage, q, trendsDiff(got, want))
					}
				}
			}
			compare("appended")
			if _, err := s.Prune(ctx, t0.Add(time.Duration(20*24+rng.IntN(24))*time.Hour)); err != nil {
				t.Fatal(err)
			}
			compare("pruned")
		})
	}
}

// TestSchema2GetsTheSummary opens a schema-2 file (no summary yet) and
// checks that the migration summed every stored run.
func TestSchema2GetsTheSummary(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC)
	randomHistory(t, s, rng, t0, 60)
	q := TrendQuery{Provider: "qemu", MaxPoints: 5}
	want, err := s.Trends(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if want.Bucket != "week" {
		t.Fatalf("bucket %q: the test wants a weekly trend", want.Bucket)
	}
	for _, stmt := range []string{`DROP TABLE cell_buckets`, `PRAGMA user_version = 2`} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rows, v int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cell_buckets`).Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("summary rows after migration: %d, %v", rows, err)
	}
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version %d, %v", v, err)
	}
	got, err := s.Trends(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after migration:\n%+v\nwant %+v", got, want)
	}
}

// trendsDiff says where two Trends differ: the first cell whose recent
// runs or trend differ, point by point.
func trendsDiff(got, want *Trends) string {
	if got.Runs != want.Runs || got.Bucket != want.Bucket {
		return fmt.Sprintf("summary: %d runs per %s; run by run: %d per %s", got.Runs, got.Bucket, want.Runs, want.Bucket)
	}
	for name, pair := range map[string][2]map[string][]Point{"recent": {got.Recent, want.Recent}, "trend": {got.Trend, want.Trend}} {
		for cell := range mergeKeys(pair[0], pair[1]) {
			if g, w := pair[0][cell], pair[1][cell]; !reflect.DeepEqual(g, w) {
				return fmt.Sprintf("%s of %s:\nsummary:    %+v\nrun by run: %+v", name, cell, g, w)
			}
		}
	}
	return "same cells and points, other maps"
}

func mergeKeys(a, b map[string][]Point) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}
