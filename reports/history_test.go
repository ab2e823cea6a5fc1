package reports

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

func TestRegressionsAndFixesFromHistory(t *testing.T) {
	ctx := context.Background()
	store, err := history.Open(filepath.Join(t.TempDir(), history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	mk := func(id string, day int, a, b results.Verdict) *results.File {
		at := time.Date(2026, 11, day, 1, 0, 0, 0, time.UTC)
		return &results.File{Schema: results.SchemaVersion, RunID: id, Started: at, Runs: []results.Run{
			{Cell: "regresses", Repeat: 1, Verdict: a, Started: at},
			{Cell: "gets-fixed", Repeat: 1, Verdict: b, Started: at},
			{Cell: "new", Repeat: 1, Verdict: results.Pass, Started: at},
		}}
	}
	past := []*results.File{
		mk("d1", 20, results.Pass, results.KernelCrash),
		mk("d2", 21, results.Pass, results.Hang),
		mk("d3", 22, results.InfraError, results.InfraError), // inconclusive: skipped when comparing
	}
	for _, f := range past {
		if _, err := store.Append(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	now := mk("d4", 23, results.DataLoss, results.Pass)
	now.Runs = now.Runs[:2]
	if _, err := store.Append(ctx, now); err != nil { // the runner appends before the report runs
		t.Fatal(err)
	}
	r, err := Build(ctx, now, Options{History: store})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Regressions) != 1 || r.Regressions[0].Cell != "regresses" || r.Regressions[0].BeforeRun != "d2" {
		t.Errorf("regressions = %+v", r.Regressions)
	}
	if len(r.Fixes) != 1 || r.Fixes[0].Cell != "gets-fixed" {
		t.Errorf("fixes = %+v", r.Fixes)
	}
	if r.History == nil || r.History.Runs != 3 {
		t.Errorf("history = %+v", r.History)
	}
	c := r.cells["regresses"]
	if len(c.Trend) != 4 || c.Trend[3].RunID != "d4" || c.Change != "regression" {
		t.Errorf("trend = %+v, change %q", c.Trend, c.Change)
	}
	// --since excludes d1 and d2: nothing conclusive to compare with.
	r, err = Build(ctx, now, Options{History: store, Since: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Regressions)+len(r.Fixes) != 0 {
		t.Errorf("since: regressions %+v fixes %+v", r.Regressions, r.Fixes)
	}
	var b bytes.Buffer
	r, _ = Build(ctx, now, Options{History: store})
	if err := r.WriteHTML(&b, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Regressions (1)") || !strings.Contains(b.String(), `class="badge b-regression"`) {
		t.Error("html does not flag the regression")
	}
}

// TestNoChangeAcrossProviders: a QEMU run that passes after a Vagrant run
// of the same cell ID crashed is no fix (and the reverse no regression):
// they are two hosts, and each has its own trend.
func TestNoChangeAcrossProviders(t *testing.T) {
	ctx := context.Background()
	mk := func(id, provider string, hour int, v results.Verdict) *results.File {
		at := time.Date(2026, 11, 20, hour, 0, 0, 0, time.UTC)
		return &results.File{Schema: results.SchemaVersion, RunID: id, Provider: provider, Started: at, Runs: []results.Run{
			{Cell: "k6.1-debian12-docker20.10.24-overlay2", Repeat: 1, Verdict: v, Started: at}}}
	}
	tests := []struct {
		name         string
		past         []*results.File
		now          *results.File
		change       string
		trendRunsNow int // trend length, this run included
	}{
		{"vagrant crash, then qemu pass: no fix", []*results.File{mk("v1", "vagrant", 1, results.KernelCrash)},
			mk("q1", "qemu", 2, results.Pass), "", 1},
		{"qemu pass, then vagrant crash: no regression", []*results.File{mk("q1", "qemu", 1, results.Pass)},
			mk("v1", "vagrant", 2, results.KernelCrash), "", 1},
		{"qemu crash, vagrant pass, qemu pass: a qemu fix", []*results.File{mk("q1", "qemu", 1, results.KernelCrash), mk("v1", "vagrant", 2, results.Pass)},
			mk("q2", "qemu", 3, results.Pass), "fix", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := history.Open(filepath.Join(t.TempDir(), history.FileName))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			for _, f := range append(tt.past, tt.now) {
				if _, err := store.Append(ctx, f); err != nil {
					t.Fatal(err)
				}
			}
			r, err := Build(ctx, tt.now, Options{History: store})
			if err != nil {
				t.Fatal(err)
			}
			c := r.cells["k6.1-debian12-docker20.10.24-overlay2"]
			if c.Change != tt.change || len(c.Trend) != tt.trendRunsNow {
				t.Errorf("change %q trend %+v; want change %q and %d points", c.Change, c.Trend, tt.change, tt.trendRunsNow)
			}
			if tt.change == "" && len(r.Regressions)+len(r.Fixes) != 0 {
				t.Errorf("regressions %+v fixes %+v across providers", r.Regressions, r.Fixes)
			}
		})
	}
}
