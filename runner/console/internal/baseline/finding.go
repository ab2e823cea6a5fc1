// Package baseline is a frozen copy of runner/console's scanner as of commit
// 49463a4 (before the one-pass literal prefilter and the signatures of issue
// 16). It exists only so that BenchmarkScan can run today's scanner beside the
// new one in the same process; nothing outside runner/console's tests imports
// it, so it never ships in a binary. Do not fix bugs here: it is a yardstick.
package baseline

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
