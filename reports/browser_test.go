package reports

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

// hostileDir copies testdata/basic to a temp dir and adds a 10 MB console
// line (inside the crash excerpt's window) and a 10 MB finding excerpt line.
func hostileDir(t *testing.T) (dir string, crashCell string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/basic")); err != nil {
		t.Fatal(err)
	}
	crashCell = "k5.10-debian11-docker20.10.5-overlay2"
	console := filepath.Join(dir, "runs", crashCell, "r2", "console.log")
	b, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	huge := strings.Repeat("X", 10<<20) + "<script>window.pwned=5</script>"
	lines[39] = strings.TrimSuffix(lines[39], "\n") + huge + "\n"
	if err := os.WriteFile(console, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Runs {
		if f.Runs[i].Cell == crashCell && f.Runs[i].Verdict == results.KernelCrash {
			f.Runs[i].Findings[0].Excerpt += "\n" + huge
		}
	}
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, crashCell
}

// writeReport builds the report of the results directory dir and writes it
// to dir/report.html, the page the browser opens.
func writeReport(t *testing.T, dir string) (*Report, string) {
	t.Helper()
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Build(context.Background(), f, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "report.html")
	fh, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := rep.WriteHTML(fh, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	return rep, page
}

// browser starts chromium headless with a fresh profile and no background
// network, for 90 seconds, and returns its context. Cleanup closes it and
// fails t if a process of it is left.
func browser(t *testing.T, chromium string) context.Context {
	t.Helper()
	profile := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(profile))
	t.Cleanup(func() {
		cancelAlloc()
		testutil.NoProcessesLeft(t, profile)
	})
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	return bctx
}

func TestIntegrationHTMLInChromium(t *testing.T) {
	testutil.Integration(t)
	chromium := testutil.RequiresChromium(t)
	dir, crashCell := hostileDir(t)
	rep, page := writeReport(t, dir)
	if st, _ := os.Stat(page); st.Size() > 2<<20 {
		t.Errorf("report.html is %d bytes: the 10 MB lines were not cut", st.Size())
	}

	bctx := browser(t, chromium)

	anchor := rep.anchorOf(crashCell)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
	}
	must(chromedp.Do(bctx,
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
	))
	pwned, err := chromedp.Run(bctx, chromedp.Evaluate[string](`typeof window.pwned`))
	must(err)
	summary, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#most-stable")))
	must(err)
	svgs, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll(".facets svg").length`))
	must(err)
	rects, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll(".facets svg rect").length`))
	must(err)
	scripts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.scripts.length`))
	must(err)
	imgs, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.images.length`))
	must(err)
	top, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	must(err)
	// Open the crashed cell from the heatmap, as a reader would.
	must(chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`svg a[href="#`+anchor+`"] rect`)),
		chromedp.WaitVisible(chromedp.CSS(`#`+anchor+` .console`)),
	))
	open, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("`+anchor+`").open`))
	must(err)
	consoleText, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#`+anchor+` .console`)))
	must(err)
	drill, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	must(err)
	for name, png := range map[string][]byte{"top": top, "drilldown": drill} {
		p := filepath.Join(t.TempDir(), "matrixctl-report-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %s", name, p)
		keep := filepath.Join(os.TempDir(), "matrixctl-report-"+name+".png")
		if name == "top" {
			keep = filepath.Join(os.TempDir(), "matrixctl-report.png")
		}
		if err := os.WriteFile(keep, png, 0o644); err == nil {
			t.Logf("screenshot %s kept at %s", name, keep)
		}
	}
	if pwned != "undefined" {
		t.Errorf("a script from the results ran: typeof window.pwned = %q", pwned)
	}
	if scripts != 1 || imgs != 0 {
		t.Errorf("page has %d scripts and %d images, want only its own script and no images", scripts, imgs)
	}
	if !strings.Contains(summary, "k6.12-debian13-docker26.1.5-overlay2") {
		t.Errorf("most stable card = %q, want the 19/20 cell", summary)
	}
	if svgs == 0 || rects == 0 {
		t.Errorf("heatmap: %d svgs, %d rects", svgs, rects)
	}
	if !open {
		t.Errorf("drill-down %s did not open on click", anchor)
	}
	for _, want := range []string{
		"<script>window.pwned=1</script>",      // HTML shown as text
		`<img src=x onerror="window.pwned=2">`, // ditto
		"BUG: unable to handle page fault",     // ANSI colour codes removed
		"bytes cut]",                           // the 10 MB line is cut with a marker
		"\u2407\u2408 bell+backspace",          // control characters made visible
	} {
		if !strings.Contains(consoleText, want) {
			t.Errorf("console excerpt lacks %q:\n%.2000s", want, consoleText)
		}
	}
	if strings.Contains(consoleText, "\x1b") || strings.Contains(consoleText, "[1;31m") {
		t.Errorf("console excerpt shows raw ANSI escapes:\n%.2000s", consoleText)
	}
	if len(consoleText) > 64<<10 {
		t.Errorf("console excerpt is %d bytes", len(consoleText))
	}

	// A cell shows its failed and latest runs in full; the others are a
	// summary whose link opens their artifacts directory.
	best := rep.anchorOf("k6.1-debian12-docker20.10.24-overlay2")
	must(chromedp.Do(bctx,
		chromedp.Navigate("file://"+page+"#"+best),
		chromedp.WaitVisible(chromedp.CSS(`#`+best+` p.more a`)),
	))
	more, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#`+best+` p.more`)))
	must(err)
	if !strings.Contains(more, "1 more runs not shown in full: 1 pass (repeat 1)") {
		t.Errorf("more-runs summary = %q", more)
	}
	href, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#`+best+` p.more a").href`))
	must(err)
	must(chromedp.Do(bctx, chromedp.Navigate(href), chromedp.WaitVisible(chromedp.CSS("body"))))
	listing, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + " " + document.body.innerText`))
	must(err)
	if !strings.Contains(listing, "/runs/k6.1-debian12-docker20.10.24-overlay2/r1/") || !strings.Contains(listing, "console.log") {
		t.Errorf("the more-runs link did not open the cell's artifacts directory: %.300s", listing)
	}
}

// TestIntegrationBigReportInChromium opens a report over the page's budget
// of runs shown in full: a heatmap box of a cell with no drill-down lands
// on its ranking row, one of a failing cell opens its drill-down.
func TestIntegrationBigReportInChromium(t *testing.T) {
	testutil.Integration(t)
	chromium := testutil.RequiresChromium(t)
	dir := t.TempDir()
	out, err := json.Marshal(manyRuns(1500, 4))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), out, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, page := writeReport(t, dir)
	quiet := rep.Ranking[len(rep.Ranking)-2].Cell
	qa, ba := rep.anchorOf(quiet), rep.anchorOf("bad")
	bctx := browser(t, chromium)
	err = chromedp.Do(bctx,
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
		chromedp.Click(chromedp.CSS(`svg a[href="#`+qa+`"] rect`)),
	)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	target, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(function(){var e=document.querySelector(":target");return e?e.tagName+" "+e.id:"none"})()`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if target != "TR "+qa {
		t.Errorf("heatmap box of %s lands on %q, want its ranking row", quiet, target)
	}
	err = chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`svg a[href="#`+ba+`"] rect`)),
		chromedp.WaitVisible(chromedp.CSS(`#`+ba+` .run`)),
	)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	runs, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#`+ba+` .run").length`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	total, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll(".run").length`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if runs == 0 || total != maxDetailRuns {
		t.Errorf("bad cell shows %d runs in full, the page %d; want some and the budget %d", runs, total, maxDetailRuns)
	}
}

// TestIntegrationRealReportInChromium renders the real runner output in
// testdata/real-qemu, opens the failing cell's drill-down and its dockerd
// log tail, and keeps a screenshot at $TMPDIR/matrixctl-real-report-drilldown.png.
func TestIntegrationRealReportInChromium(t *testing.T) {
	testutil.Integration(t)
	chromium := testutil.RequiresChromium(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/real-qemu")); err != nil {
		t.Fatal(err)
	}
	rep, page := writeReport(t, dir)
	bctx := browser(t, chromium)
	anchor := rep.anchorOf("k6.1-debian12-docker20.10.24-overlay2")
	err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
		chromedp.Click(chromedp.CSS(`#never-use a[href="#`+anchor+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#`+anchor+` details.tail[data-log="dockerd"] > summary`)),
		chromedp.Click(chromedp.CSS(`#`+anchor+` details.tail[data-log="dockerd"] > summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#`+anchor+` details.tail[data-log="dockerd"] .console`)),
	)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	tail, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#`+anchor+` details.tail[data-log="dockerd"] .console`)))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if !strings.Contains(tail, "containerd") {
		t.Errorf("dockerd tail does not show the containerd failure:\n%s", tail)
	}
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	keep := filepath.Join(os.TempDir(), "matrixctl-real-report-drilldown.png")
	if err := os.WriteFile(keep, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the real report's drill-down: %s", keep)
}
