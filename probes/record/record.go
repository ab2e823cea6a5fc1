// Package record defines the probes' one JSON-lines record schema
// (matrixctl.probe/v1), a writer that flushes every record so that whatever
// was written survives a kill, and a reader that tolerates a torn last line.
//
// Every record is one line: a JSON object with "schema", "probe", "kind" and
// "time", plus kind-specific fields:
//
//	kind=metric    metrics{name: value}, source
//	kind=mismatch  mismatch{file, offset, kind, expected, found, promised}
//	kind=error     message, source
//	kind=info      message, source
//	kind=summary   ok, metrics, message
//
// A probe container writes a summary record for its own part (Source names
// the part, e.g. "net:bridge"); the host-side driver closes every probe with
// one summary record whose Source is SourceDriver: that one is the probe's
// result. Fields are only added within v1; removing or renaming one bumps Schema.
package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Schema is the value of every record's "schema" field.
const Schema = "matrixctl.probe/v1"

// Kinds of records.
const (
	KindMetric   = "metric"
	KindMismatch = "mismatch"
	KindError    = "error"
	KindInfo     = "info"
	KindSummary  = "summary"
)

// SourceDriver is the Source of the host-side driver's closing summary per probe.
const SourceDriver = "driver"

// MaxLine is the longest line the reader accepts.
const MaxLine = 1 << 20

// Record is one line of probe output.
type Record struct {
	Schema string    `json:"schema"`
	Probe  string    `json:"probe"`
	Kind   string    `json:"kind"`
	Time   time.Time `json:"time"`
	// Source names the part of the probe that wrote the record, e.g. "io:/data/vol" or "net:bridge".
	Source   string             `json:"source,omitempty"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Mismatch *Mismatch          `json:"mismatch,omitempty"`
	Message  string             `json:"message,omitempty"`
	// OK is set on summary records only.
	OK *bool `json:"ok,omitempty"`
}

// Mismatch is one block (or file) whose content is not what the probe wrote.
type Mismatch struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	// Kind is the block.Kind of the corruption, e.g. "checksum", "stale-generation", "missing-file".
	Kind     string `json:"kind"`
	Expected string `json:"expected"`
	Found    string `json:"found"`
	// Promised is true when the write had been acknowledged by fsync and
	// recorded in the state journal before the loss: "promised and lost".
	Promised bool `json:"promised"`
}

// Validate reports what makes r not a v1 record.
func (r *Record) Validate() error {
	switch {
	case r.Schema != Schema:
		return fmt.Errorf("schema %q, want %q", r.Schema, Schema)
	case r.Probe == "":
		return errors.New("no probe name")
	}
	switch r.Kind {
	case KindMetric, KindError, KindInfo:
	case KindMismatch:
		if r.Mismatch == nil {
			return errors.New("mismatch record without mismatch")
		}
	case KindSummary:
		if r.OK == nil {
			return errors.New("summary record without ok")
		}
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	return nil
}

// Writer writes records for one probe. Each Write is one write(2) of a
// whole line; when the destination has a Sync method (a file) it is synced after every
// record, so a record that Write returned for survives a kill and a power cut.
// Writer is safe for concurrent use.
type Writer struct {
	mu    sync.Mutex
	w     io.Writer
	probe string
	now   func() time.Time
}

// NewWriter returns a Writer that stamps records with probe.
func NewWriter(w io.Writer, probe string) *Writer {
	return &Writer{w: w, probe: probe, now: time.Now}
}

// Write fills in schema, probe and time (when unset) and writes r as one line.
func (w *Writer) Write(r Record) error {
	r.Schema = Schema
	if r.Probe == "" {
		r.Probe = w.probe
	}
	if r.Time.IsZero() {
		r.Time = w.now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if f, ok := w.w.(interface{ Sync() error }); ok {
		// stdout may be a pipe: Sync fails with EINVAL there, which is fine.
		_ = f.Sync()
	}
	return nil
}

// Metric writes a metric record.
func (w *Writer) Metric(source string, m map[string]float64) error {
	return w.Write(Record{Kind: KindMetric, Source: source, Metrics: m})
}

// Error writes an error record.
func (w *Writer) Error(source, format string, args ...any) error {
	return w.Write(Record{Kind: KindError, Source: source, Message: fmt.Sprintf(format, args...)})
}

// Info writes an info record.
func (w *Writer) Info(source, format string, args ...any) error {
	return w.Write(Record{Kind: KindInfo, Source: source, Message: fmt.Sprintf(format, args...)})
}

// MismatchRecord writes a mismatch record.
func (w *Writer) MismatchRecord(source string, m Mismatch) error {
	return w.Write(Record{Kind: KindMismatch, Source: source, Mismatch: &m})
}

// Summary writes the closing summary record.
func (w *Writer) Summary(ok bool, metrics map[string]float64, msg string) error {
	return w.Write(Record{Kind: KindSummary, OK: &ok, Metrics: metrics, Message: msg})
}

// LineError is a complete line that is not a valid record.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("record line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Scan reads records from r and calls fn for each valid one. A final line
// without a trailing newline is a torn write (the writer was killed): it is
// skipped and torn is true. A complete line that is not a valid record stops
// the scan with a *LineError; records before it have been passed to fn.
func Scan(r io.Reader, fn func(Record) error) (torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	line := 0
	for {
		b, err := readLine(br)
		if len(b) == 0 && errors.Is(err, io.EOF) {
			return false, nil
		}
		line++
		if errors.Is(err, io.EOF) {
			// no trailing newline: torn unless it is a full valid record
			var rec Record
			if json.Unmarshal(b, &rec) != nil || rec.Validate() != nil {
				return true, nil
			}
			return false, fn(rec)
		}
		if err != nil {
			return false, &LineError{Line: line, Err: err}
		}
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return false, &LineError{Line: line, Err: err}
		}
		if err := rec.Validate(); err != nil {
			return false, &LineError{Line: line, Err: err}
		}
		if err := fn(rec); err != nil {
			return false, err
		}
	}
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLine)

// readLine returns one line without its newline; io.EOF with a non-empty
// line means the line had no newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxLine+1 {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return buf, err
		}
		return buf[:len(buf)-1], nil
	}
}

// ReadRecords reads all records from r (see Scan).
func ReadRecords(r io.Reader) (recs []Record, torn bool, err error) {
	torn, err = Scan(r, func(rec Record) error {
		recs = append(recs, rec)
		return nil
	})
	return recs, torn, err
}

// ReadFile reads all records from the file at path (see Scan).
func ReadFile(path string) ([]Record, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	recs, torn, err := ReadRecords(f)
	if err != nil {
		return recs, torn, fmt.Errorf("%s: %w", path, err)
	}
	return recs, torn, nil
}
