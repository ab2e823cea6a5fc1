package probes

import (
	"context"
	"errors"
	"io"
	"net/url"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/matrixctl/matrixctl/probes/record"
)

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{{Probes: []string{"disk"}}, {Intensity: 11}, {Duration: 1}} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	o, err := Options{}.withDefaults()
	if err != nil || len(o.Probes) != 3 || o.RunID == "" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestJudgeAndSummary(t *testing.T) {
	ok := false
	o := outcome{exit: 1, records: []record.Record{
		{Kind: record.KindMismatch, Mismatch: &record.Mismatch{File: "/f", Offset: 4096, Kind: "checksum"}},
		{Kind: record.KindSummary, OK: &ok, Metrics: map[string]float64{"mismatches": 1}},
	}}
	r := &ProbeResult{Name: IO, Metrics: map[string]float64{}}
	err := judge(IO, o, r, ErrIntegrity)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("judge = %v", err)
	}
	s := r.Summary()
	if s.OK || len(s.Errors) != 1 || s.Metrics["mismatches"] != 1 {
		t.Fatalf("summary %+v", s)
	}
	if err := judge(IO, outcome{watchdog: true}, &ProbeResult{Metrics: map[string]float64{}}, ErrIntegrity); !errors.Is(err, ErrProbe) {
		t.Fatalf("watchdog judge = %v", err)
	}
}

func TestBuildImageReproducible(t *testing.T) {
	bin := t.TempDir() + "/bin"
	if err := writeFile(bin, []byte("\x7fELF fake")); err != nil {
		t.Fatal(err)
	}
	a, ia, err := BuildImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	b, ib, _ := BuildImage(bin)
	if string(a) != string(b) || ia != ib {
		t.Fatal("probe image differs between builds")
	}
}

// TestClassify: a daemon that answered with a failure is ErrDaemon
// (docker-failure); a broken connection or a cancellation is no probe
// failure class (infra-error).
func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		daemon bool
	}{
		{cerrdefs.ErrUnavailable, true},
		{cerrdefs.ErrInternal, true},
		{cerrdefs.ErrInvalidArgument, false},
		{context.Canceled, false},
		{&url.Error{Op: "Post", URL: "http://docker", Err: io.ErrUnexpectedEOF}, false},
	}
	for _, tt := range tests {
		err := classify("x", "op", tt.err)
		var pe *ProbeError
		if got := errors.Is(err, ErrDaemon); got != tt.daemon || (!tt.daemon && errors.As(err, &pe)) {
			t.Errorf("classify(%v) = %v, want daemon failure %v", tt.err, err, tt.daemon)
		}
	}
}

// TestIODockerPath: the volume path the host reads in a scratch image is
// where the session really puts the IO probe's volume.
func TestIODockerPath(t *testing.T) {
	s := &session{runID: "cut1abc"}
	vol := s.name("io")
	if got, want := IOJournal("cut1abc"), "/volumes/"+vol+"/_data/journal.jsonl"; got != want {
		t.Errorf("IOJournal = %q, want %q", got, want)
	}
	if got := IODockerPath("cut1abc", "/data/layer/f1"); got != "" {
		t.Errorf("layer path mapped to %q", got)
	}
}
