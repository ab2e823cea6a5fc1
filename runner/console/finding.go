// Package console turns a kernel serial-console stream into findings: what
// happened (a results.Category), how bad it is (a results.Severity), a title
// normalised for deduplication and the excerpt an engineer needs to read.
// The categories and severities are the shared taxonomy of package results;
// their verdicts and ranks are its category table.
//
// The same Scanner is used live, while a VM runs (the runner tees the serial
// bytes into Scanner.Write and ends a cell early when OnFinding reports a fatal
// finding), and offline on saved logs (Scan). Both paths give identical
// findings for the same bytes, however the bytes are chunked.
//
// Crash signatures are rows of a data table (rules.go), tested against the
// corpus in testdata/console/<group>/<name>.log; `go test ./runner/console
// -update` rewrites the expected-findings headers of that corpus.
//
// Memory is bounded for any input: lines longer than Options.MaxLineLen are
// cut (the excerpt says how many bytes were dropped), excerpts are bounded,
// and at most Options.MaxFindings findings are kept (Scanner.Dropped counts
// the rest).
package console

import (
	"fmt"
	"github.com/matrixctl/matrixctl/api/results"
	"time"
)

// Finding is one event found on the console.
type Finding struct {
	// File is the log the finding came from; set by callers (the CLI), not by the scanner.
	File     string           `json:"file,omitempty"`
	Category results.Category `json:"category"`
	Severity results.Severity `json:"severity"`
	// Title is normalised for deduplication: no addresses, pids, timestamps,
	// CPU numbers, line numbers or offsets.
	Title string `json:"title"`
	// StartLine and EndLine are the 1-based line numbers of the report's first
	// and last line in the stream.
	StartLine int `json:"start_line"`
	EndLine   int `json:"end_line"`
	// Count is how many identical single-line reports were folded into this
	// finding (I/O errors repeat by the thousand); 0 or 1 means one.
	Count int `json:"count,omitempty"`
	// Corrupted means the report was cut short (the stream ended, the machine
	// rebooted or another report interrupted it before its end marker), so
	// the title may be less precise than usual.
	Corrupted bool `json:"corrupted,omitempty"`
	// Excerpt is the report plus a few lines of context before it, bounded in size.
	Excerpt string `json:"excerpt"`
}

// String is a one-line summary: "line 12-40: fatal kernel-panic: kernel panic: ...".
func (f Finding) String() string {
	return fmt.Sprintf("line %d-%d: %s %s: %s", f.StartLine, f.EndLine, f.Severity, f.Category, f.Title)
}

// Silent is the finding the runner records when the console produced no
// output for d after line lastLine (a hang that printed nothing).
func Silent(d time.Duration, lastLine int) Finding {
	return Finding{
		Category:  results.CatConsoleSilent,
		Severity:  results.SevFatal,
		Title:     "console went silent",
		StartLine: lastLine,
		EndLine:   lastLine,
		Excerpt:   fmt.Sprintf("no console output for %s after line %d", d.Round(time.Second), lastLine),
	}
}

// Worst returns the highest severity among findings, or "" when there are none.
func Worst(findings []Finding) results.Severity {
	var worst results.Severity
	for _, f := range findings {
		if f.Severity.Rank() > worst.Rank() {
			worst = f.Severity
		}
	}
	return worst
}
