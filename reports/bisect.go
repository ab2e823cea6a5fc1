package reports

import (
	"bufio"
	"fmt"
	"html/template"
	"io"

	"github.com/matrixctl/matrixctl/api/results"
)

// BisectPage is what WriteBisectHTML renders: a bisection's request, its
// steps with links to every run's artifacts, and the answer.
type BisectPage struct {
	Axis     string
	Cell     string   // the cell bisected (its ID without the release)
	Releases []string // oldest first; the first is the good end, the last the bad end
	// TestFault describes an injected test fault ("" when none).
	TestFault string
	Result    *results.BisectResult
	// Error says why the bisection has no answer ("" when it has one).
	Error string
	// RunDirs gives, per step (Result.Steps order), the results directory
	// of each of its runs, relative to the HTML file.
	RunDirs [][]string
}

type bisectStepView struct {
	N    int
	Step results.BisectStep
	Runs []bisectRunView
}

type bisectRunView struct {
	Verdict results.Verdict
	Href    string
}

// WriteBisectHTML writes the page of a bisection: one self-contained HTML
// file with the report's style and no script. Every text is escaped by
// html/template; release names and reasons are data.
func WriteBisectHTML(w io.Writer, p *BisectPage) error {
	t, err := parseTemplates()
	if err != nil {
		return err
	}
	view, err := bisectView(p)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	if err := t.ExecuteTemplate(bw, "bisect-page", view); err != nil {
		return fmt.Errorf("write bisect page: %w", err)
	}
	return bw.Flush()
}

// bisectView is the data of templates/bisect.tmpl.
func bisectView(p *BisectPage) (map[string]any, error) {
	css, err := templateFS.ReadFile("templates/report.css")
	if err != nil {
		return nil, err
	}
	var steps []bisectStepView
	if p.Result != nil {
		for i, st := range p.Result.Steps {
			v := bisectStepView{N: i + 1, Step: st}
			for j, verdict := range st.Verdicts {
				r := bisectRunView{Verdict: verdict}
				if i < len(p.RunDirs) && j < len(p.RunDirs[i]) {
					r.Href = p.RunDirs[i][j]
				}
				v.Runs = append(v.Runs, r)
			}
			steps = append(steps, v)
		}
	}
	var ends []string
	if n := len(p.Releases); n > 0 {
		ends = []string{p.Releases[0], p.Releases[n-1]}
	}
	return map[string]any{
		"P": p, "Steps": steps, "Ends": ends, "CSS": template.CSS(css),
		"CSP": "default-src 'none'; style-src 'unsafe-inline'",
	}, nil
}
