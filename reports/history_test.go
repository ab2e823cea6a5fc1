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
