package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports/history"
)

// DecisionSchema is written to the JSON form of a decision.
const DecisionSchema = "matrixctl.decision/v1"

// Combine joins the runs of several results files and of a history (many
// nights) into one file to decide on. A run ID present both in a file and
// in the history is taken from the file only; with provider set, history
// runs of other providers are left out (another provider is another host).
func Combine(files []*results.File, stored []history.StoredRun, provider string) *results.File {
	out := &results.File{Schema: results.SchemaVersion, RunID: "combined", Provider: provider}
	seen := map[string]bool{}
	var ids []string
	for _, f := range files {
		seen[f.RunID] = true
		ids = append(ids, f.RunID)
		out.Runs = append(out.Runs, f.Runs...)
		if out.Started.IsZero() || f.Started.Before(out.Started) {
			out.Started = f.Started
		}
	}
	for _, s := range stored {
		if seen[s.RunID] || provider != "" && s.Provider != provider {
			continue
		}
		out.Runs = append(out.Runs, s.Run)
		if !seen["h\x00"+s.RunID] {
			seen["h\x00"+s.RunID] = true
			ids = append(ids, s.RunID)
		}
	}
	out.Spec = fmt.Sprintf("%d runs of %d results", len(out.Runs), len(ids))
	return out
}

// WriteJSON writes d in its versioned schema.
func (d *Decision) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Schema string `json:"schema"`
		*Decision
	}{DecisionSchema, d})
}

// WriteText writes d for a terminal.
func (d *Decision) WriteText(w io.Writer) error {
	var b strings.Builder
	if len(d.Constraints) > 0 {
		fmt.Fprintf(&b, "Constraints: %s\n", CleanLine(strings.Join(d.Constraints, "; ")))
	}
	fmt.Fprintf(&b, "Candidates: %d of %d ranked cells qualify\n\n", d.Qualified, d.Cells)
	fmt.Fprintf(&b, "%s\n", CleanLine(d.Summary))
	if d.Winner != nil {
		label := "Winner"
		if d.Outcome != OutcomeWinner {
			label = "Best so far"
		}
		writeChoiceText(&b, label, d.Winner)
	}
	if d.RunnerUp != nil {
		writeChoiceText(&b, "Runner-up", d.RunnerUp)
		fmt.Fprintf(&b, "  lost because: %s\n", CleanLine(d.RunnerUp.Why))
	}
	if len(d.Disqualified) > 0 {
		title := "Disqualified (nearest first)"
		if d.Outcome == OutcomeNoneQualifies {
			title = "Nearest candidates and what disqualified each"
		}
		fmt.Fprintf(&b, "\n%s:\n", title)
		for _, x := range d.Disqualified {
			fmt.Fprintf(&b, "  %s (%s): %s\n", CleanLine(x.Cell), x.Class, CleanLine(strings.Join(x.Reasons, "; ")))
		}
	}
	fmt.Fprintf(&b, "\nMethod: %s\n", d.Method)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeChoiceText(b *strings.Builder, label string, c *Choice) {
	fmt.Fprintf(b, "\n%s: %s\n", label, CleanLine(c.Cell))
	fmt.Fprintf(b, "  kernel %s · %s · docker %s · %s · init %s · cgroup %s\n", CleanLine(c.Kernel), CleanLine(c.Distro),
		CleanLine(c.Docker), CleanLine(c.Driver), orUnknown(c.Init), orUnknown(c.Cgroup))
	fmt.Fprintf(b, "  class %s · %d/%d counted runs passed (%d runs in all) · %s\n", c.Class, c.Passed, c.Counted, c.Runs,
		verdictList(c.Verdict))
	fmt.Fprintf(b, "  confidence: Wilson lower bound %.2f · P(best) %.2f", c.WilsonLower, c.PBest)
	if c.HasPerf {
		fmt.Fprintf(b, " · perf %.1f", c.PerfScore)
	}
	b.WriteString("\n")
	if c.Warned > 0 {
		fmt.Fprintf(b, "  kernel warnings in %d of %d passes: %s\n", c.Warned, c.Passed, CleanLine(strings.Join(c.Warnings, "; ")))
	}
	if f := c.LastFailure; f != nil {
		fmt.Fprintf(b, "  last failure: %s", f.Verdict)
		if !f.Started.IsZero() {
			fmt.Fprintf(b, " at %s", f.Started.UTC().Format(time.RFC3339))
		}
		if f.Reason != "" {
			fmt.Fprintf(b, ": %s", f.Reason)
		}
		b.WriteString("\n")
	} else {
		b.WriteString("  last failure: none\n")
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return CleanLine(s)
}

// verdictList is "pass 3, probe-failure 1" in VerdictOrder.
func verdictList(m map[results.Verdict]int) string {
	var parts []string
	for _, v := range results.VerdictOrder {
		if n := m[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", v, n))
		}
	}
	return strings.Join(parts, ", ")
}

// WriteMarkdown writes d for a chat message or a PR comment.
func (d *Decision) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("## matrixctl recommend\n\n")
	if len(d.Constraints) > 0 {
		b.WriteString("Constraints:")
		for _, c := range d.Constraints {
			fmt.Fprintf(&b, " `%s`", strings.ReplaceAll(CleanLine(c), "`", "'"))
		}
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "**%s**\n\n", mdEscape(d.Summary))
	if d.Winner != nil || d.RunnerUp != nil {
		b.WriteString("| | cell | class | passed | Wilson | P(best) | last failure |\n|---|---|---|---|---|---|---|\n")
		row := func(label string, c *Choice) {
			last := "none"
			if c.LastFailure != nil {
				last = string(c.LastFailure.Verdict) + ": " + mdEscape(c.LastFailure.Reason)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d/%d | %.2f | %.2f | %s |\n", label, mdEscape(c.Cell), c.Class, c.Passed,
				c.Counted, c.WilsonLower, c.PBest, last)
		}
		if d.Winner != nil {
			row("winner", d.Winner)
		}
		if d.RunnerUp != nil {
			row("runner-up", d.RunnerUp)
		}
		b.WriteString("\n")
		if d.RunnerUp != nil {
			fmt.Fprintf(&b, "Runner-up lost because: %s\n\n", mdEscape(d.RunnerUp.Why))
		}
	}
	if len(d.Disqualified) > 0 {
		b.WriteString("Disqualified (nearest first):\n")
		for _, x := range d.Disqualified {
			fmt.Fprintf(&b, "- %s — %s\n", mdEscape(x.Cell), mdEscape(strings.Join(x.Reasons, "; ")))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
