package reports

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

// TestRealRunnerResults reads a results directory written by `matrixctl run`
// (QEMU provider, TCG, on a loaded 2-core machine; command in testdata/real-qemu/README):
// dockerd failed to come up in both overlay2 runs, aufs was found missing
// from the real 6.1 kernel package, devicemapper is unsupported by rule.
func TestRealRunnerResults(t *testing.T) {
	const dir = "testdata/real-qemu"
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), f, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Ranking) != 1 || r.Ranking[0].Class != ClassFailing || r.Ranking[0].Worst != results.DockerFailure {
		t.Errorf("ranking = %+v", r.Ranking)
	}
	if len(r.Signatures) != 1 || len(r.Signatures[0].Cells) != 1 || r.Signatures[0].Runs != 2 {
		t.Errorf("the two runs' dockerd failures differ only in timestamps and must be one signature: %+v", r.Signatures)
	}
	reasons := map[string]string{}
	for _, n := range r.NotRun {
		if n.Class != ClassUnsupported {
			t.Errorf("%s: class %s", n.Cell, n.Class)
		}
		reasons[n.Cell] = n.Reason
	}
	if !strings.Contains(reasons["k6.1-debian12-docker20.10.24-aufs"], "no aufs") ||
		!strings.Contains(reasons["k6.12-debian13-docker26.1.5-devicemapper"], "removed in Docker 25.0") {
		t.Errorf("unsupported reasons = %q", reasons)
	}
	for _, run := range f.Runs {
		for name, rel := range run.Artifacts {
			if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
				t.Errorf("%s r%d artifact %s: %v", run.Cell, run.Repeat, name, err)
			}
		}
	}
	var html, junit, md, js bytes.Buffer
	if err := r.WriteHTML(&html, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`href="runs/k6.1-debian12-docker20.10.24-overlay2/r1/dockerd.log"`, "xfs_repair", "failing 0/2", "lines of the dockerd log", "timeout waiting for containerd"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("html lacks %q", want)
		}
	}
	if !strings.Contains(junit.String(), `tests="5" failures="2" errors="0" skipped="3"`) {
		t.Errorf("junit totals wrong:\n%.300s", junit.String())
	}
}
