package reports

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"iter"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

//go:embed templates/*.tmpl templates/report.css templates/report.js
var templateFS embed.FS

// parseTemplates parses the embedded templates. It is called per render:
// no package-level state.
func parseTemplates() (*template.Template, error) {
	t, err := template.New("report.html.tmpl").Funcs(template.FuncMap{
		"pct":   func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) },
		"f2":    func(v float64) string { return fmt.Sprintf("%.2f", v) },
		"fnum":  formatNumber,
		"stamp": formatTime,
	}).ParseFS(templateFS, "templates/*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse report templates: %w", err)
	}
	return t, nil
}

// HTMLOptions configure WriteHTML.
type HTMLOptions struct {
	// LinkBase is prefixed to artifact paths in links: the results directory
	// relative to the HTML file ("" when the HTML is written into it).
	LinkBase string
}

// htmlView is the data of templates/report.html.tmpl.
type htmlView struct {
	Title  string
	CSS    template.CSS
	Script template.JS
	CSP    string
	R      *Report
	Facets []facetView
	Legend []legendItem
	// Cells yields the drill-downs one at a time, so a report of 100,000 runs
	// never holds every run's view (and console excerpt) at once.
	Cells   iter.Seq[cellView]
	Anchors map[string]string // cell ID → drill-down anchor
	// Drill says which cells have a drill-down: every not-run cell, and a
	// ranked cell when the page shows some of its runs in full. A ranked
	// cell without one carries its anchor on its ranking row, which is its
	// aggregate.
	Drill map[string]bool
	Sigs  []sigView
	// MaxProblemRuns and LatestRuns say which runs a drill-down shows in full.
	MaxProblemRuns, LatestRuns, MaxDetailRuns int
}

type legendItem struct {
	Label, Fill, Text string
}

type facetView struct {
	Title         string
	Width, Height int
	Rows          []axisLabel
	Cols          []axisLabel
	Rects         []rectView
}

type axisLabel struct {
	Text string
	X, Y int
}

type rectView struct {
	X, Y, W, H int
	TX, TY, SY int
	// Kind is the box's class (its colours come from heatmapCSS), or
	// "none" for a combination not in the matrix.
	Kind         string
	Label, Sub   string
	Href, Tip    string
	Unsupported  bool
	Inconclusive bool
}

type sigView struct {
	*Signature
	Links []cellLink
	More  int
}

type cellLink struct{ Cell, Href string }

type cellView struct {
	Anchor string
	Cell   string
	Score  *CellScore
	NotRun *NotRun
	// Runs are the runs shown in full (detailPlan); More summarises the rest.
	Runs []runView
	More *moreView
}

// moreView summarises the runs of a cell that are not shown in full: how
// many, their repeats per verdict, and the directory holding their artifacts.
type moreView struct {
	Count    int
	Verdicts []verdictRepeats
	Href     string // "": the runs recorded no artifacts
}

type verdictRepeats struct {
	Verdict results.Verdict
	N       int
	Repeats string // "1–5, 7, 9–12"
}

type runView struct {
	Repeat, Attempt int
	Verdict         results.Verdict
	Reason          string
	KernelRelease   string
	DockerServer    string
	Host            *hostView // nil: the provider recorded none
	Duration        string
	Findings        []findingView
	Probes          []probeView
	Checker         *checkerView
	Artifacts       []artifactView
	Phases          []phaseView
	// Tails are the last lines of logs, shown when no finding points at console lines.
	Tails []tailView
}

// hostView is results.Host, cleaned for the page.
type hostView struct {
	InitMode, CgroupMode, Init, Cgroup, Security, Runc, Containerd, Cmdline string
	Changes                                                                 []string
}

func newHostView(h *results.Host) *hostView {
	if h == nil {
		return nil
	}
	v := &hostView{InitMode: CleanLine(h.InitMode), CgroupMode: CleanLine(h.CgroupMode), Init: CleanLine(h.Init),
		Security: CleanLine(strings.Join(h.SecurityOptions, ", ")), Runc: CleanLine(h.RuncVersion),
		Containerd: CleanLine(h.ContainerdVersion), Cmdline: CleanLine(h.KernelCmdline)}
	if h.CgroupVersion != "" {
		v.Cgroup = CleanLine("v" + h.CgroupVersion + " (" + h.CgroupDriver + " driver)")
	}
	for _, c := range h.HarnessChanges {
		v.Changes = append(v.Changes, CleanLine(c.What+" — "+c.Why))
	}
	return v
}

type tailView struct {
	Name  string
	Lines []Line
	Note  string
}

type findingView struct {
	Source, Category, Severity, Title string
	StartLine, EndLine                int
	Lines                             []Line
	Excerpt                           string
	Note                              string
}

type probeView struct {
	Name    string
	OK      bool
	Metrics []metricView
	Errors  []string
}

type metricView struct {
	Name, Value string
}

type checkerView struct {
	Tool, Args, Output string
	ExitCode           int
	Clean              bool
}

type artifactView struct{ Name, Href string }

type phaseView struct{ Name, Duration, Error string }

// classStyle is the heatmap fill and text colour per class: a colour-blind
// safe ramp, always paired with a text label.
func classStyle(c Class) (fill, text string) {
	switch c {
	case ClassStable:
		return "#a6dba0", "#00441b"
	case ClassWarned:
		return "#d9f0a3", "#2b4a00"
	case ClassFlaky:
		return "#fee08b", "#4d3800"
	case ClassFailing:
		return "#f4a261", "#3d1a00"
	case ClassBroken:
		return "#a50f15", "#ffffff"
	case ClassUnsupported:
		return "#e6e6e6", "#333333"
	case ClassInconclusive:
		return "#c6dbef", "#08306b"
	}
	return "#ffffff", "#767676"
}

// heatmapCSS colours the heatmap boxes by class (g.k-<class>): once in the
// style sheet rather than on each of thousands of boxes.
func heatmapCSS() string {
	var b strings.Builder
	for _, l := range legend() {
		fmt.Fprintf(&b, ".facets g.k-%s rect { fill: %s; stroke: %s; }\n.facets g.k-%s text { fill: %s; }\n",
			l.Label, l.Fill, l.Fill, l.Label, l.Text)
	}
	b.WriteString(".facets g.k-none rect { fill: #ffffff; stroke: #bbbbbb; }\n.facets g.k-none text { fill: #767676; }\n")
	return b.String()
}

func legend() []legendItem {
	var out []legendItem
	for _, c := range []Class{ClassStable, ClassWarned, ClassFlaky, ClassFailing, ClassBroken, ClassUnsupported, ClassInconclusive} {
		f, t := classStyle(c)
		out = append(out, legendItem{Label: string(c), Fill: f, Text: t})
	}
	return out
}

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer, opts HTMLOptions) error {
	t, err := parseTemplates()
	if err != nil {
		return err
	}
	v, err := r.htmlView(opts)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := t.Execute(bw, v); err != nil {
		return fmt.Errorf("render html report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

func (r *Report) htmlView(opts HTMLOptions) (*htmlView, error) {
	css, err := templateFS.ReadFile("templates/report.css")
	if err != nil {
		return nil, err
	}
	js, err := templateFS.ReadFile("templates/report.js")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(js)
	v := &htmlView{
		Title:  "matrixctl report " + CleanLine(r.Source.RunID),
		CSS:    template.CSS(string(css) + heatmapCSS()),
		Script: template.JS(js),
		// Nothing but the page's own style and its one script may run, even if
		// escaping failed somewhere: defence in depth for hostile console text.
		CSP: "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-" +
			base64.StdEncoding.EncodeToString(sum[:]) + "'",
		R:       r,
		Legend:  legend(),
		Anchors: map[string]string{},

		MaxProblemRuns: maxProblemRuns,
		LatestRuns:     latestRuns,
		MaxDetailRuns:  maxDetailRuns,
	}
	ids := make([]string, 0, len(r.runs))
	for _, c := range r.Ranking {
		ids = append(ids, c.Cell)
	}
	for _, n := range r.NotRun {
		if n.Selected() { // a filtered or other-shard cell has nothing to drill into
			ids = append(ids, n.Cell)
		}
	}
	for i, id := range ids {
		v.Anchors[id] = anchorFor(i, id)
	}
	notRun := map[string]*NotRun{}
	for i := range r.NotRun {
		notRun[r.NotRun[i].Cell] = &r.NotRun[i]
	}
	plan := r.detailPlan(ids)
	v.Drill = map[string]bool{}
	for _, id := range ids {
		v.Drill[id] = len(plan[id]) > 0 || notRun[id] != nil
	}
	v.Cells = func(yield func(cellView) bool) {
		for _, id := range ids {
			if !v.Drill[id] {
				continue
			}
			runs := r.runs[id]
			cv := cellView{Anchor: v.Anchors[id], Cell: id, Score: r.cells[id], NotRun: notRun[id]}
			for _, i := range plan[id] {
				cv.Runs = append(cv.Runs, r.runView(&runs[i], opts))
			}
			cv.More = moreRuns(runs, splitRuns(len(runs), plan[id]), opts)
			if !yield(cv) {
				return
			}
		}
	}
	v.Facets = r.facets(v.Anchors)
	for _, s := range r.Signatures {
		sv := sigView{Signature: s}
		for i, c := range s.Cells {
			if i == 8 {
				sv.More = len(s.Cells) - i
				break
			}
			sv.Links = append(sv.Links, cellLink{Cell: c, Href: "#" + v.Anchors[c]})
		}
		v.Sigs = append(v.Sigs, sv)
	}
	return v, nil
}

// A cell's drill-down shows in full only the runs that matter; the rest are
// counted per verdict and linked to their artifacts, so a report of
// thousands of cells × dozens of repeats stays a page a browser opens
// (BenchmarkReport100k: 5000 cells × 20 repeats).
const (
	// maxProblemRuns caps the failed runs (any verdict but pass and
	// unsupported) shown in full per cell: the latest ones.
	maxProblemRuns = 5
	// latestRuns are shown in full per cell whatever their verdict.
	latestRuns = 2
	// maxDetailRuns caps the runs shown in full on the page. Failed runs
	// get it first, worst cells first; then the latest runs, best cells
	// first. A small report never reaches it.
	maxDetailRuns = 600
)

// detailPlan picks the runs each drill-down shows in full (indexes into
// r.runs[cell], in repeat order). ids are the cells in ranking order, the
// not-run cells after them.
func (r *Report) detailPlan(ids []string) map[string][]int {
	plan := map[string][]int{}
	budget := maxDetailRuns
	take := func(id string, want func(i int, problems *int) bool) {
		runs := r.runs[id]
		problems := 0
		for i := len(runs) - 1; i >= 0 && budget > 0; i-- {
			if !slices.Contains(plan[id], i) && want(i, &problems) {
				plan[id] = append(plan[id], i)
				budget--
			}
		}
	}
	for _, id := range slices.Backward(ids) { // worst first
		take(id, func(i int, problems *int) bool {
			v := r.runs[id][i].Verdict
			if v == results.Pass || v == results.Unsupported || *problems == maxProblemRuns {
				return false
			}
			*problems++
			return true
		})
	}
	for _, id := range ids {
		n := len(r.runs[id])
		take(id, func(i int, _ *int) bool { return i >= n-latestRuns })
	}
	for _, shown := range plan {
		slices.Sort(shown)
	}
	return plan
}

// splitRuns is the indexes of n runs not in shown (both in repeat order).
func splitRuns(n int, shown []int) (rest []int) {
	for i := range n {
		if !slices.Contains(shown, i) {
			rest = append(rest, i)
		}
	}
	return rest
}

// moreRuns summarises the runs not shown in full (nil when there are none).
func moreRuns(runs []results.Run, rest []int, opts HTMLOptions) *moreView {
	if len(rest) == 0 {
		return nil
	}
	m := &moreView{Count: len(rest)}
	byVerdict := map[results.Verdict][]int{}
	var dirs []string
	for _, i := range rest {
		run := &runs[i]
		byVerdict[run.Verdict] = append(byVerdict[run.Verdict], run.Repeat)
		if d := artifactDir(run); d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, v := range results.VerdictOrder {
		if reps := byVerdict[v]; len(reps) > 0 {
			m.Verdicts = append(m.Verdicts, verdictRepeats{Verdict: v, N: len(reps), Repeats: repeatRanges(reps)})
		}
	}
	if d := commonDir(dirs); d != "" {
		m.Href = path.Join(opts.LinkBase, d) + "/"
	}
	return m
}

// artifactDir is the directory of a run's artifacts: the common directory
// of its (safe) artifact paths, "" when it has none.
func artifactDir(run *results.Run) string {
	var dirs []string
	for _, p := range run.Artifacts {
		if CheckArtifactPath(p) == nil {
			dirs = append(dirs, path.Dir(path.Clean(p)))
		}
	}
	return commonDir(dirs)
}

// commonDir is the longest common directory of slash paths ("" for none,
// or when they share nothing but the results directory itself).
func commonDir(dirs []string) string {
	if len(dirs) == 0 {
		return ""
	}
	common := strings.Split(dirs[0], "/")
	for _, d := range dirs[1:] {
		parts := strings.Split(d, "/")
		n := 0
		for n < len(common) && n < len(parts) && common[n] == parts[n] {
			n++
		}
		common = common[:n]
	}
	d := strings.Join(common, "/")
	if d == "." {
		return ""
	}
	return d
}

// repeatRanges writes repeat numbers as ranges: 1–5, 7, 9–12.
func repeatRanges(reps []int) string {
	reps = slices.Clone(reps)
	slices.Sort(reps)
	reps = slices.Compact(reps)
	var b strings.Builder
	for i := 0; i < len(reps); {
		j := i
		for j+1 < len(reps) && reps[j+1] == reps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if j > i {
			fmt.Fprintf(&b, "%d–%d", reps[i], reps[j])
		} else {
			fmt.Fprintf(&b, "%d", reps[i])
		}
		i = j + 1
	}
	return b.String()
}

// anchorFor is a unique, markup-safe element ID for a cell.
func anchorFor(i int, id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "c%d-", i)
	for _, r := range id {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() > 96 {
			break
		}
	}
	return b.String()
}

func (r *Report) runView(run *results.Run, opts HTMLOptions) runView {
	rv := runView{Repeat: run.Repeat, Attempt: run.Attempt, Verdict: run.Verdict, Reason: CleanLine(run.Reason),
		KernelRelease: CleanLine(run.KernelRelease), DockerServer: CleanLine(run.DockerServer), Host: newHostView(run.Host)}
	if !run.Started.IsZero() && !run.Finished.Before(run.Started) {
		rv.Duration = run.Finished.Sub(run.Started).Round(100 * time.Millisecond).String()
	}
	console := ""
	if p, ok := run.Artifacts["console"]; ok && CheckArtifactPath(p) == nil && r.dir != "" {
		console = filepath.Join(r.dir, filepath.FromSlash(p))
	}
	for _, f := range run.Findings {
		fv := findingView{Source: CleanLine(f.Source), Category: CleanLine(string(f.Category)), Severity: CleanLine(string(f.Severity)),
			Title: trimTitle(f.Title), StartLine: f.StartLine, EndLine: max(f.EndLine, f.StartLine)}
		if console != "" && f.StartLine > 0 {
			lines, err := consoleExcerpt(console, f.StartLine, f.EndLine)
			if err != nil {
				fv.Note = "console artifact unreadable: " + CleanLine(err.Error())
			}
			fv.Lines = lines
		}
		if len(fv.Lines) == 0 && f.Excerpt != "" {
			fv.Excerpt = CleanBlock(f.Excerpt)
		}
		rv.Findings = append(rv.Findings, fv)
	}
	if run.Verdict != results.Pass && run.Verdict != results.Unsupported && r.dir != "" {
		hasLines := false
		for _, f := range rv.Findings {
			hasLines = hasLines || len(f.Lines) > 0
		}
		logs := []string{"dockerd", "agent"}
		if !hasLines {
			logs = append([]string{"console"}, logs...)
		}
		for _, name := range logs {
			p, ok := run.Artifacts[name]
			if !ok || CheckArtifactPath(p) != nil {
				continue
			}
			tv := tailView{Name: CleanLine(name)}
			lines, err := tailLines(filepath.Join(r.dir, filepath.FromSlash(p)), tailCount)
			if err != nil {
				tv.Note = "unreadable: " + CleanLine(err.Error())
			}
			tv.Lines = lines
			if len(tv.Lines) > 0 || tv.Note != "" {
				rv.Tails = append(rv.Tails, tv)
			}
		}
	}
	for _, p := range run.Probes {
		pv := probeView{Name: CleanLine(p.Name), OK: p.OK}
		for _, k := range slices.Sorted(maps.Keys(p.Metrics)) {
			pv.Metrics = append(pv.Metrics, metricView{Name: CleanLine(k), Value: formatNumber(p.Metrics[k])})
		}
		for i, e := range p.Errors {
			if i == 20 {
				pv.Errors = append(pv.Errors, fmt.Sprintf("[… %d more errors]", len(p.Errors)-i))
				break
			}
			pv.Errors = append(pv.Errors, CleanBlock(e))
		}
		rv.Probes = append(rv.Probes, pv)
	}
	if c := run.Checker; c != nil {
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = CleanLine(a)
		}
		rv.Checker = &checkerView{Tool: CleanLine(c.Tool), Args: strings.Join(args, " "), Output: CleanBlock(c.Output),
			ExitCode: c.ExitCode, Clean: c.Clean}
	}
	for _, name := range slices.Sorted(maps.Keys(run.Artifacts)) {
		p := run.Artifacts[name]
		if CheckArtifactPath(p) != nil {
			continue
		}
		rv.Artifacts = append(rv.Artifacts, artifactView{Name: CleanLine(name), Href: path.Join(opts.LinkBase, p)})
	}
	for _, ph := range run.Phases {
		rv.Phases = append(rv.Phases, phaseView{Name: CleanLine(ph.Name), Duration: ph.Duration.Round(time.Millisecond).String(),
			Error: CleanLine(ph.Error)})
	}
	return rv
}

// tailCount is the number of log lines shown at the end of a failed run's logs.
const tailCount = 30

// Heatmap geometry.
const (
	hmLabelW = 150
	hmHeadH  = 28
	hmCellW  = 124
	hmCellH  = 40
)

// facetKey is one heatmap: a distro and Docker version, and the cgroup
// version when the report holds cells of more than one.
type facetKey struct{ distro, docker, cgroup string }

type hmEntry struct {
	kernel, driver, cell string
	class                Class
	label, sub, tip      string
	order                int // for collisions: keep the worst
}

// facets lays out one kernel × driver heatmap per distro and docker version,
// and per cgroup version when the cells ran under more than one (so a v1
// and a v2 cell of the same axes are two boxes, not one).
func (r *Report) facets(anchors map[string]string) []facetView {
	entries := map[facetKey][]hmEntry{}
	cgroups := map[string]bool{}
	for _, c := range r.Ranking {
		cgroups[c.Cgroup] = true
	}
	for _, n := range r.NotRun {
		cgroups[n.Cgroup] = true
	}
	delete(cgroups, "")
	byCgroup := len(cgroups) > 1
	key := func(distro, docker, cgroup string) facetKey {
		if !byCgroup {
			cgroup = ""
		}
		return facetKey{distro, docker, cgroup}
	}
	for _, c := range r.Ranking {
		label := fmt.Sprintf("%s %d/%d", c.Class, c.Passed, c.Counted)
		sub := ""
		if c.Class == ClassBroken {
			label = fmt.Sprintf("%s %d/%d", shortVerdict(c.Worst), c.Verdicts[c.Worst], c.Counted)
			sub = "broken"
		} else if c.HasPerf {
			sub = fmt.Sprintf("perf %.0f", c.PerfScore)
		}
		k := key(c.Distro, c.Docker, c.Cgroup)
		entries[k] = append(entries[k], hmEntry{kernel: c.Kernel, driver: c.Driver, cell: c.Cell, class: c.Class,
			label: label, sub: sub, tip: fmt.Sprintf("#%d %s: %s", c.Rank, c.Cell, cmpOr(c.Reason, string(c.Class))),
			order: c.Rank})
	}
	for i, n := range r.NotRun {
		if !n.Selected() {
			continue
		}
		k := key(n.Distro, n.Docker, n.Cgroup)
		entries[k] = append(entries[k], hmEntry{kernel: n.Kernel, driver: n.Driver, cell: n.Cell, class: n.Class,
			label: n.heatmapLabel(), tip: n.Cell + ": " + n.Reason, order: -1 - i})
	}
	keys := slices.Collect(maps.Keys(entries))
	slices.SortFunc(keys, func(a, b facetKey) int {
		return cmp.Or(naturalCompare(a.distro, b.distro), naturalCompare(a.docker, b.docker), cmp.Compare(a.cgroup, b.cgroup))
	})
	var out []facetView
	for _, k := range keys {
		es := entries[k]
		var kernels, drivers []string
		for _, e := range es {
			kernels = append(kernels, e.kernel)
			drivers = append(drivers, e.driver)
		}
		slices.SortFunc(kernels, naturalCompare)
		kernels = slices.Compact(kernels)
		slices.SortFunc(drivers, naturalCompare)
		drivers = slices.Compact(drivers)
		title := CleanLine(k.distro) + " · docker " + CleanLine(k.docker)
		if k.cgroup != "" {
			title += " · cgroup " + k.cgroup
		}
		f := facetView{Title: title,
			Width: hmLabelW + len(drivers)*hmCellW + 4, Height: hmHeadH + len(kernels)*hmCellH + 4}
		for j, d := range drivers {
			f.Cols = append(f.Cols, axisLabel{Text: shorten(CleanLine(d), 18), X: hmLabelW + j*hmCellW + hmCellW/2, Y: hmHeadH - 9})
		}
		for i, kn := range kernels {
			f.Rows = append(f.Rows, axisLabel{Text: "kernel " + shorten(CleanLine(kn), 12), X: hmLabelW - 8, Y: hmHeadH + i*hmCellH + hmCellH/2 + 5})
		}
		placed := map[[2]int]hmEntry{}
		count := map[[2]int]int{}
		for _, e := range es {
			pos := [2]int{slices.Index(kernels, e.kernel), slices.Index(drivers, e.driver)}
			count[pos]++
			if old, ok := placed[pos]; !ok || e.order > old.order {
				placed[pos] = e
			}
		}
		for i := range kernels {
			for j := range drivers {
				x, y := hmLabelW+j*hmCellW, hmHeadH+i*hmCellH
				e, ok := placed[[2]int{i, j}]
				rv := rectView{X: x + 2, Y: y + 2, W: hmCellW - 4, H: hmCellH - 4, TX: x + hmCellW/2, TY: y + 17, SY: y + 31}
				if !ok {
					rv.Kind, rv.Label, rv.Tip = "none", "not in matrix", "not in matrix"
					f.Rects = append(f.Rects, rv)
					continue
				}
				rv.Kind = string(e.class)
				rv.Label, rv.Sub, rv.Tip = shorten(CleanLine(e.label), 22), e.sub, CleanLine(e.tip)
				if n := count[[2]int{i, j}]; n > 1 {
					rv.Sub = fmt.Sprintf("+%d more cells", n-1)
				}
				rv.Unsupported = e.class == ClassUnsupported
				rv.Inconclusive = e.class == ClassInconclusive
				rv.Href = "#" + anchors[e.cell]
				f.Rects = append(f.Rects, rv)
			}
		}
		out = append(out, f)
	}
	return out
}

func shorten(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}

// naturalCompare orders strings with digit runs compared as numbers, so
// kernel 5.10 sorts after 5.9 and 6.1 before 6.12.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			na, ra := digitRun(a)
			nb, rb := digitRun(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func formatNumber(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15 && v > -1e15:
		return fmt.Sprintf("%d", int64(v))
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// anchorOf returns the drill-down anchor of a cell ("" if unknown).
func (r *Report) anchorOf(cell string) string {
	i := 0
	for _, c := range r.Ranking {
		if c.Cell == cell {
			return anchorFor(i, cell)
		}
		i++
	}
	for _, n := range r.NotRun {
		if !n.Selected() {
			continue
		}
		if n.Cell == cell {
			return anchorFor(i, cell)
		}
		i++
	}
	return ""
}

// shortVerdict is a heatmap label for a broken cell's worst verdict.
func shortVerdict(v results.Verdict) string {
	switch v {
	case results.KernelCrash:
		return "CRASH"
	case results.DataLoss:
		return "DATA LOSS"
	case results.FSCorruption:
		return "CORRUPT"
	case results.Hang:
		return "HANG"
	}
	return strings.ToUpper(string(v))
}
