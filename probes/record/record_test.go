package record

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "io")
	w.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	w.Metric("io:/data", map[string]float64{"bytes": 4096})
	w.MismatchRecord("io:/data", Mismatch{File: "/data/f", Offset: 8192, Kind: "checksum", Expected: "a", Found: "b", Promised: true})
	w.Error("io", "boom %d", 1)
	w.Summary(false, map[string]float64{"mismatches": 1}, "failed")
	recs, torn, err := ReadRecords(&buf)
	if err != nil || torn {
		t.Fatalf("torn=%v err=%v", torn, err)
	}
	if len(recs) != 4 || recs[1].Mismatch.Offset != 8192 || *recs[3].OK || recs[0].Schema != Schema {
		t.Fatalf("got %+v", recs)
	}
}

func TestTornLastLineIgnored(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "net")
	w.Info("x", "one")
	w.Info("x", "two")
	full := buf.String()
	// a complete record missing only its newline is accepted; anything shorter is torn
	for cut := len(full) - 2; cut > strings.Index(full, "\n")+1; cut-- {
		recs, torn, err := ReadRecords(strings.NewReader(full[:cut]))
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if len(recs) != 1 || !torn {
			t.Fatalf("cut %d: %d records, torn=%v", cut, len(recs), torn)
		}
	}
}

func TestBadLineNamed(t *testing.T) {
	in := `{"schema":"matrixctl.probe/v1","probe":"io","kind":"info","time":"2026-01-01T00:00:00Z"}
{"schema":"matrixctl.probe/v9","probe":"io","kind":"info","time":"2026-01-01T00:00:00Z"}
`
	recs, _, err := ReadRecords(strings.NewReader(in))
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 || len(recs) != 1 {
		t.Fatalf("err=%v recs=%d", err, len(recs))
	}
}

func FuzzReadRecords(f *testing.F) {
	f.Add([]byte(`{"schema":"matrixctl.probe/v1","probe":"io","kind":"summary","time":"2026-01-01T00:00:00Z","ok":true}` + "\n"))
	f.Add([]byte(`{"schema":"matrixctl.probe/v1","probe":"io","kind":"mismatch","time":"2026-01-01T00:00:00Z","mismatch":{"file":"/a","offset":1}}` + "\n{\"sch"))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"schema":"matrixctl.probe/v1","probe":"io","kind":"mismatch","time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, _, err := ReadRecords(bytes.NewReader(data))
		for _, r := range recs {
			if verr := r.Validate(); verr != nil {
				t.Fatalf("returned an invalid record: %v", verr)
			}
		}
		// what the reader returned must round-trip through the writer
		var buf bytes.Buffer
		w := NewWriter(&buf, "x")
		for _, r := range recs {
			if werr := w.Write(r); werr != nil {
				t.Fatal(werr)
			}
		}
		again, torn, err2 := ReadRecords(&buf)
		if err2 != nil || torn || len(again) != len(recs) {
			t.Fatalf("round trip: %d -> %d records, torn=%v, err=%v (first err %v)", len(recs), len(again), torn, err2, err)
		}
	})
}
