package runner

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/matrixctl/matrixctl/api/results"
)

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// PlainProgress writes one timestamped line per event: for CI logs and
// anything that is not a terminal.
type PlainProgress struct {
	mu    sync.Mutex
	w     io.Writer
	total int
	done  int
	est   *Estimate
	now   func() time.Time
}

// NewPlainProgress writes progress lines to w.
func NewPlainProgress(w io.Writer) *PlainProgress {
	return &PlainProgress{w: w, now: time.Now}
}

func (p *PlainProgress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s\n", p.now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// Planned implements Progress.
func (p *PlainProgress) Planned(total, done int) {
	p.mu.Lock()
	p.total, p.done = total, done
	p.mu.Unlock()
	p.printf("plan: %d runs, %d already done%s", total, done, p.estimate())
}

// Estimate implements Estimator.
func (p *PlainProgress) Estimate(e Estimate) {
	p.mu.Lock()
	p.est = &e
	p.mu.Unlock()
}

// estimate is the latest estimate as a line suffix ("" before the first).
func (p *PlainProgress) estimate() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.est == nil {
		return ""
	}
	return "; " + p.est.Text(p.now())
}

// Phase implements Progress.
func (p *PlainProgress) Phase(cell string, repeat, attempt int, phase string) {
	a := ""
	if attempt > 1 {
		a = fmt.Sprintf(" (attempt %d)", attempt)
	}
	p.printf("%s r%d%s: %s", cell, repeat, a, phase)
}

// Done implements Progress.
func (p *PlainProgress) Done(run results.Run) {
	p.mu.Lock()
	p.done++
	n, total := p.done, p.total
	p.mu.Unlock()
	p.printf("[%d/%d] %s r%d: %s: %s (%s)%s", n, total, run.Cell, run.Repeat, run.Verdict, oneLine(run.Reason),
		run.Finished.Sub(run.Started).Round(time.Second), p.estimate())
}

// Close implements Progress.
func (p *PlainProgress) Close() {}

// TTYProgress draws one line per running cell (phase, elapsed) and an
// overall bar on a terminal.
type TTYProgress struct {
	mu      sync.Mutex
	p       *mpb.Progress
	overall *mpb.Bar
	cells   map[string]*ttyCell
	w       io.Writer
	// estMu, not mu, guards est: the bar's decorator reads it while a
	// holder of mu may wait for the bar's redraw.
	estMu sync.Mutex
	est   *Estimate
}

type ttyCell struct {
	bar   *mpb.Bar
	phase string
	mu    sync.Mutex
}

// NewTTYProgress draws on w, a terminal.
func NewTTYProgress(w io.Writer) *TTYProgress {
	return &TTYProgress{p: mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond)), cells: map[string]*ttyCell{}, w: w}
}

// Planned implements Progress.
func (t *TTYProgress) Planned(total, done int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.overall = t.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name("runs "), decor.CountersNoUnit("%d/%d")),
		mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.Elapsed(decor.ET_STYLE_GO),
			decor.Any(func(decor.Statistics) string { return t.estimate() })),
		mpb.BarPriority(1<<30))
	t.overall.SetCurrent(int64(done))
}

// Estimate implements Estimator.
func (t *TTYProgress) Estimate(e Estimate) {
	t.estMu.Lock()
	t.est = &e
	t.estMu.Unlock()
}

// estimate is the overall bar's estimate, counted down at every redraw.
func (t *TTYProgress) estimate() string {
	t.estMu.Lock()
	defer t.estMu.Unlock()
	if t.est == nil {
		return ""
	}
	return " · " + t.est.Short(time.Now())
}

// Phase implements Progress.
func (t *TTYProgress) Phase(cell string, repeat, attempt int, phase string) {
	key := fmt.Sprintf("%s r%d", cell, repeat)
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.cells[key]
	if !ok {
		c = &ttyCell{}
		name := key
		c.bar = t.p.New(0, mpb.SpinnerStyle(),
			mpb.PrependDecorators(decor.Name(name+" ", decor.WCSyncSpaceR), decor.Any(func(decor.Statistics) string {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.phase
			}, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)))
		t.cells[key] = c
	}
	c.mu.Lock()
	c.phase = phase
	if attempt > 1 {
		c.phase = fmt.Sprintf("%s (attempt %d)", phase, attempt)
	}
	c.mu.Unlock()
}

// Done implements Progress.
func (t *TTYProgress) Done(run results.Run) {
	key := fmt.Sprintf("%s r%d", run.Cell, run.Repeat)
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.cells[key]; ok {
		c.bar.Abort(true)
		delete(t.cells, key)
	}
	if t.overall != nil {
		t.overall.Increment()
	}
	// a finished run's verdict stays on screen above the bars
	fmt.Fprintf(t.p, "%-9s %s r%d: %s\n", run.Verdict, run.Cell, run.Repeat, oneLine(run.Reason))
}

// Close implements Progress: it removes the bars and waits for the last redraw.
func (t *TTYProgress) Close() {
	t.mu.Lock()
	for k, c := range t.cells {
		c.bar.Abort(true)
		delete(t.cells, k)
	}
	if t.overall != nil {
		t.overall.Abort(false)
	}
	t.mu.Unlock()
	t.p.Wait()
}

// oneLine keeps hostile text (console titles, probe errors) on one line
// and free of terminal control characters.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
