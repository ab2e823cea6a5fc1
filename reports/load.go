package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
)

// ResultsFile is the name of the results file inside a results directory.
const ResultsFile = "results.json"

// Load reads DIR/results.json. Runs are decoded one at a time so a huge file
// is not held twice in memory. Every run is validated (see ValidateRun).
func Load(dir string) (*results.File, error) {
	name := filepath.Join(dir, ResultsFile)
	fh, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	defer fh.Close()
	f, err := Decode(bufio.NewReaderSize(fh, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// Decode reads a results.json document from r, streaming the runs array.
func Decode(r io.Reader) (*results.File, error) {
	dec := json.NewDecoder(r)
	f := &results.File{}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("offset %d: %w", dec.InputOffset(), err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fmt.Errorf("offset %d: duplicate key %q", dec.InputOffset(), key)
		}
		seen[key] = true
		if err := decodeField(dec, f, key); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("offset %d: trailing data after the results object", dec.InputOffset())
	}
	if f.Schema != results.SchemaVersion {
		return nil, fmt.Errorf("schema %q: want %q", f.Schema, results.SchemaVersion)
	}
	if f.RunID == "" {
		return nil, errors.New("run_id is empty")
	}
	if f.Plan != nil {
		if err := ValidatePlan(f.Plan); err != nil {
			return nil, err
		}
	}
	for i := range f.Runs {
		if err := ValidateRun(&f.Runs[i]); err != nil {
			return nil, fmt.Errorf("runs[%d] (cell %q repeat %d): %w", i, f.Runs[i].Cell, f.Runs[i].Repeat, err)
		}
	}
	return f, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("offset %d: %w", dec.InputOffset(), err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("offset %d: want %q, got %v", dec.InputOffset(), want, tok)
	}
	return nil
}

// decodeField decodes the value of one top-level key of results.json.
func decodeField(dec *json.Decoder, f *results.File, key string) error {
	var dst any
	switch key {
	case "schema":
		dst = &f.Schema
	case "run_id":
		dst = &f.RunID
	case "spec":
		dst = &f.Spec
	case "spec_sha256":
		dst = &f.SpecHash
	case "host":
		dst = &f.Host
	case "provider":
		dst = &f.Provider
	case "started":
		dst = &f.Started
	case "finished":
		dst = &f.Finished
	case "fault_seed":
		dst = &f.FaultSeed
	case "budget":
		dst = &f.Budget
	case "plan":
		dst = &f.Plan
	case "runs":
		return decodeRuns(dec, f)
	default:
		dst = new(json.RawMessage) // unknown keys from newer writers are ignored
	}
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("offset %d: field %q: %w", dec.InputOffset(), key, err)
	}
	return nil
}

func decodeRuns(dec *json.Decoder, f *results.File) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("offset %d: runs: %w", dec.InputOffset(), err)
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("offset %d: runs: want an array", dec.InputOffset())
	}
	for dec.More() {
		var r results.Run
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("offset %d: runs[%d]: %w", dec.InputOffset(), len(f.Runs), err)
		}
		f.Runs = append(f.Runs, r)
	}
	_, err = dec.Token() // ']'
	return err
}

// ValidateRun checks the fields the report relies on: a cell ID, a known
// verdict, a positive repeat and safe artifact paths.
func ValidateRun(r *results.Run) error {
	var errs []error
	if r.Cell == "" {
		errs = append(errs, errors.New("cell is empty"))
	}
	if !slices.Contains(results.VerdictOrder, r.Verdict) {
		errs = append(errs, fmt.Errorf("unknown verdict %q", r.Verdict))
	}
	if r.Repeat < 0 {
		errs = append(errs, fmt.Errorf("repeat %d is negative", r.Repeat))
	}
	for name, p := range r.Artifacts {
		if err := CheckArtifactPath(p); err != nil {
			errs = append(errs, fmt.Errorf("artifact %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// CheckArtifactPath accepts only slash-separated paths that stay inside the
// results directory.
func CheckArtifactPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("path %q contains a backslash or NUL", p)
	case path.IsAbs(p) || filepath.IsAbs(p):
		return fmt.Errorf("path %q is absolute", p)
	}
	if c := path.Clean(p); c == ".." || strings.HasPrefix(c, "../") || c == "." {
		return fmt.Errorf("path %q leaves the results directory", p)
	}
	return nil
}
