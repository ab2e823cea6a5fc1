package reports

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/matrixctl/matrixctl/api/results"
)

// WriteJSON writes the report in its versioned JSON schema (ReportSchema).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// JUnit XML types (the subset CI servers read).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

// junitClass is a run's JUnit classname: distro and docker version.
func junitClass(run *results.Run) string {
	return CleanLine(run.Distro) + ".docker-" + CleanLine(run.Docker)
}

// suite returns the suite of class cls, added when new; suites indexes
// out.Suites by class.
func (out *junitSuites) suite(suites map[string]int, cls string) *junitSuite {
	si, ok := suites[cls]
	if !ok {
		si = len(out.Suites)
		suites[cls] = si
		out.Suites = append(out.Suites, junitSuite{Name: cls})
	}
	return &out.Suites[si]
}

// WriteJUnit writes one testcase per cell run, grouped in one testsuite per
// distro and docker version. Non-pass verdicts that count against a cell are
// failures (message: the first finding's title, body: reason and excerpts);
// unsupported runs are skipped with their reason; infra-error runs are errors.
func (r *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "matrixctl " + CleanLine(r.Source.RunID)}
	suites := map[string]int{}
	for _, id := range r.cellIDs() {
		for i := range r.runs[id] {
			run := &r.runs[id][i]
			cls := junitClass(run)
			s := out.suite(suites, cls)
			tc := junitCase{Classname: cls, Name: fmt.Sprintf("%s/repeat-%d", CleanLine(run.Cell), run.Repeat),
				Time: fmt.Sprintf("%.3f", run.Finished.Sub(run.Started).Seconds())}
			if run.Finished.Before(run.Started) || run.Started.IsZero() {
				tc.Time = "0.000"
			}
			switch {
			case run.Verdict == results.Pass:
			case run.Verdict == results.Unsupported:
				tc.Skipped = &junitProblem{Message: CleanLine(cmpOr(run.Reason, "unsupported"))}
				s.Skipped++
			case run.Verdict == results.InfraError:
				tc.Error = &junitProblem{Message: CleanLine(cmpOr(run.Reason, "infrastructure error")),
					Type: string(run.Verdict), Body: problemBody(run)}
				s.Errors++
			default:
				tc.Failure = &junitProblem{Message: failureTitle(run), Type: string(run.Verdict), Body: problemBody(run)}
				s.Failures++
			}
			s.Tests++
			s.Cases = append(s.Cases, tc)
		}
	}
	r.junitNotRun(&out, suites)
	for i := range out.Suites {
		s := &out.Suites[i]
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Skipped += s.Skipped
		var secs float64
		for _, c := range s.Cases {
			var f float64
			fmt.Sscanf(c.Time, "%f", &f)
			secs += f
		}
		s.Time = fmt.Sprintf("%.3f", secs)
		if !r.Source.Started.IsZero() {
			s.Timestamp = r.Source.Started.UTC().Format("2006-01-02T15:04:05")
		}
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// failureTitle is the first finding's title, else the reason, else the verdict.
func failureTitle(run *results.Run) string {
	for _, f := range run.Findings {
		if f.Title != "" {
			return trimTitle(f.Title)
		}
	}
	return CleanLine(cmpOr(run.Reason, string(run.Verdict)))
}

// problemBody lists the verdict, reason and each finding with its excerpt.
func problemBody(run *results.Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "verdict: %s\n", run.Verdict)
	if run.Reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", CleanLine(run.Reason))
	}
	for _, f := range run.Findings {
		fmt.Fprintf(&b, "\n[%s/%s %s] %s", CleanLine(f.Source), CleanLine(string(f.Category)), CleanLine(string(f.Severity)), trimTitle(f.Title))
		if f.StartLine > 0 {
			fmt.Fprintf(&b, " (console lines %d-%d)", f.StartLine, max(f.EndLine, f.StartLine))
		}
		b.WriteString("\n")
		if f.Excerpt != "" {
			b.WriteString(CleanBlock(f.Excerpt))
			b.WriteString("\n")
		}
	}
	for _, p := range run.Probes {
		if p.OK {
			continue
		}
		fmt.Fprintf(&b, "\nprobe %s failed\n", CleanLine(p.Name))
		for i, e := range p.Errors {
			if i == 10 {
				fmt.Fprintf(&b, "[… %d more errors]\n", len(p.Errors)-i)
				break
			}
			b.WriteString(CleanBlock(e) + "\n")
		}
	}
	if c := run.Checker; c != nil && !c.Clean {
		fmt.Fprintf(&b, "\nchecker %s exit %d:\n%s\n", CleanLine(c.Tool), c.ExitCode, CleanBlock(c.Output))
	}
	return b.String()
}

// mdEscape makes untrusted text safe inside a Markdown table cell or line.
func mdEscape(s string) string {
	s = CleanLine(s)
	r := strings.NewReplacer("|", "\\|", "`", "\\`", "*", "\\*", "_", "\\_", "<", "&lt;", ">", "&gt;",
		"[", "\\[", "]", "\\]", "#", "\\#", "@", "@\u200b")
	s = r.Replace(s)
	const maxLen = 200
	if len(s) > maxLen {
		n := maxLen
		for n > 0 && s[n]&0xc0 == 0x80 {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

// WriteMarkdown writes a short summary for a chat message or PR comment.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	s := &r.Summary
	fmt.Fprintf(&b, "## matrixctl report — run %s\n\n", mdEscape(r.Source.RunID))
	fmt.Fprintf(&b, "%d cells, %d ranked, %d runs: %d of %d counted runs passed, %d infra errors.\n\n",
		s.Cells, s.Ranked, s.Runs, s.Passed, s.Counted, s.InfraErrors)
	if p := s.Plan; p != nil {
		b.WriteString(p.markdown())
	}
	if bud := r.Source.Budget; bud != nil {
		fmt.Fprintf(&b, "**Adaptive repeats:** %d VM-runs", bud.Spent)
		if bud.Runs > 0 {
			fmt.Fprintf(&b, " of a budget of %d", bud.Runs)
		}
		fmt.Fprintf(&b, "; stopped: %s — %s. Runs per cell:", mdEscape(bud.Stopped), mdEscape(bud.StopReason))
		for i, c := range bud.Cells {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %d", mdEscape(c.Cell), c.Runs)
		}
		b.WriteString("\n\n")
	}
	switch d := s.Decision; {
	case d.Outcome == OutcomeWinner:
		w := d.Winner
		fmt.Fprintf(&b, "**Most stable:** `%s` (%d/%d passed; confidence: Wilson lower bound %.2f, P(best) %.2f)\n\n",
			strings.ReplaceAll(CleanLine(w.Cell), "`", "'"), w.Passed, w.Counted, w.WilsonLower, w.PBest)
	case d.Outcome == OutcomeTooLittleEvidence:
		w := d.Winner
		fmt.Fprintf(&b, "**Most stable:** too little evidence to name a winner — best so far %s (%d/%d passed, "+
			"Wilson lower bound %.2f < %.2f)\n\n", mdEscape(w.Cell), w.Passed, w.Counted, w.WilsonLower, MinConfidence)
	default:
		b.WriteString("**Most stable:** none — every ranked cell is broken or failing\n\n")
	}
	if len(r.Regressions) > 0 {
		fmt.Fprintf(&b, "**Regressions (%d):**\n", len(r.Regressions))
		for _, c := range r.Regressions {
			fmt.Fprintf(&b, "- %s — now %s (passed in %s)\n", mdEscape(c.Cell), c.Worst, mdEscape(c.BeforeRun))
		}
		b.WriteString("\n")
	}
	if len(r.Fixes) > 0 {
		fmt.Fprintf(&b, "**Fixed (%d):** ", len(r.Fixes))
		for i, c := range r.Fixes {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(mdEscape(c.Cell))
		}
		b.WriteString("\n\n")
	}
	const maxList = 10
	if len(s.NeverUse) > 0 {
		fmt.Fprintf(&b, "**Never use (%d):**\n", len(s.NeverUse))
		for i, a := range s.NeverUse {
			if i == maxList {
				fmt.Fprintf(&b, "- … and %d more\n", len(s.NeverUse)-maxList)
				break
			}
			fmt.Fprintf(&b, "- %s — %s (%s)\n", mdEscape(a.Cell), mdEscape(a.Reason), a.Confidence)
		}
		b.WriteString("\n")
	}
	if n := s.PerfNoise; n.Measured {
		fmt.Fprintf(&b, "Performance noise: ±%.1f score points (scores closer than that are ties).\n\n", n.Points)
	} else {
		b.WriteString("Performance noise not measured (no repeats): performance ranks nothing.\n\n")
	}
	if len(r.Ranking) > 0 {
		b.WriteString("| # | cell | class | passed | wilson | perf |\n|---|---|---|---|---|---|\n")
		for i, c := range r.Ranking {
			if i == maxList {
				break
			}
			perf := "–"
			if c.HasPerf {
				perf = fmt.Sprintf("%.1f", c.PerfScore)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %d/%d | %.2f | %s |\n", c.Rank, mdEscape(c.Cell), c.Class,
				c.Passed, c.Counted, c.WilsonLower, perf)
		}
		if len(r.Ranking) > maxList {
			fmt.Fprintf(&b, "\n%d more ranked cells in the full report.\n", len(r.Ranking)-maxList)
		}
		b.WriteString("\n")
	}
	if len(r.NotRun) > 0 {
		fmt.Fprintf(&b, "**Not run (%d):**\n", len(r.NotRun))
		mdNotRunList(&b, r.NotRun, maxList)
	}
	if len(r.Incomplete) > 0 {
		fmt.Fprintf(&b, "\n**Ranked, but missing planned runs (%d):**\n", len(r.Incomplete))
		mdNotRunList(&b, r.Incomplete, maxList)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write markdown: %w", err)
	}
	return nil
}

// cellIDs returns every cell ID, sorted.
func (r *Report) cellIDs() []string {
	ids := make([]string, 0, len(r.runs))
	for id := range r.runs {
		ids = append(ids, id)
	}
	sortStrings(ids)
	return ids
}

// mdNotRunList writes cells that did not run (all their planned runs, or
// some) as a Markdown list of at most limit items and a count of the rest.
func mdNotRunList(b *strings.Builder, list []NotRun, limit int) {
	for i, n := range list {
		if i == limit {
			fmt.Fprintf(b, "- … and %d more\n", len(list)-limit)
			return
		}
		fmt.Fprintf(b, "- %s — %s: %s\n", mdEscape(n.Cell), n.Class, mdEscape(n.Reason))
	}
}
