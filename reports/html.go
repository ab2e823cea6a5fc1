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
	Sigs    []sigView
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
	X, Y, W, H   int
	TX, TY, SY   int
	Fill, Text   string
	Stroke       string
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
	Runs   []runView
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
		CSS:    template.CSS(css),
		Script: template.JS(js),
		// Nothing but the page's own style and its one script may run, even if
		// escaping failed somewhere: defence in depth for hostile console text.
		CSP: "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-" +
			base64.StdEncoding.EncodeToString(sum[:]) + "'",
		R:       r,
		Legend:  legend(),
		Anchors: map[string]string{},
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
	v.Cells = func(yield func(cellView) bool) {
		for _, id := range ids {
			cv := cellView{Anchor: v.Anchors[id], Cell: id, Score: r.cells[id], NotRun: notRun[id]}
			for i := range r.runs[id] {
				cv.Runs = append(cv.Runs, r.runView(&r.runs[id][i], opts))
			}
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
					rv.Fill, rv.Text, rv.Stroke, rv.Label, rv.Tip = "#ffffff", "#767676", "#bbbbbb", "not in matrix", "not in matrix"
					f.Rects = append(f.Rects, rv)
					continue
				}
				rv.Fill, rv.Text = classStyle(e.class)
				rv.Stroke = rv.Fill
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
