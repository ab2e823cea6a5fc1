package baseline

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/matrixctl/matrixctl/api/results"
	"io"
	"sort"
	"strings"
	"sync"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("console scanner is closed")

// Options configure a Scanner. Zero values take the defaults.
type Options struct {
	// OnFinding is called for every finding kept, as soon as its report
	// ends, from inside Write or Close, on the caller's goroutine. It must
	// not call back into the Scanner. The runner ends a cell early on a
	// Fatal finding. Reports with an end marker (oopses, WARNINGs, KASAN,
	// panics, which end at "Kernel Offset:") are reported on their last
	// line; reports that end where their body ends (hung tasks, lockups,
	// stalls) when the next unrelated line arrives, or at Close; repeated
	// single-line errors (I/O errors) once they stop repeating, or at Close.
	OnFinding func(Finding)
	// MaxLineLen is the number of bytes kept of one line (default 4096); the
	// rest is dropped and the excerpt says how many bytes were cut.
	MaxLineLen int
	// MaxFindings bounds the findings kept (default 256); Dropped counts the rest.
	MaxFindings int
	// ContextLines is the number of lines before a report put in its excerpt (default 5).
	ContextLines int
}

// Limits that keep memory constant.
const (
	defaultMaxLineLen   = 4096
	defaultMaxFindings  = 256
	defaultContextLines = 5
	maxOpenReports      = 8    // reports open at once (one per CPU/task context)
	maxReportLines      = 2000 // a report longer than this is cut and flagged corrupted
	excerptHeadLines    = 60   // first lines of a report kept in its excerpt
	excerptHeadBytes    = 12 << 10
	excerptTailLines    = 20 // last lines of a report kept in its excerpt
	excerptLineLen      = 1024
	maxFrames           = 48
	coalesceWindow      = 200 // lines within which repeated single-line titles are folded
	maxPending          = 8
	maxCoalescedLines   = 10 // excerpt lines kept of a folded finding
	consequenceWindow   = 300
)

// Scanner finds reports in a console stream written to it. It is an
// io.Writer, safe for concurrent use; Close flushes the reports still open.
type Scanner struct {
	mu   sync.Mutex
	opts Options
	t    *table

	line   []byte // current line, at most MaxLineLen bytes
	over   int    // bytes of the current line dropped
	clean  []byte // sanitised current line
	lineNo int

	ring    [][]byte // previous lines, for excerpt context
	ringPos int

	keySeen []uint8 // per-line cache of key lookups

	open     []*report
	pending  []*Finding
	findings []Finding
	dropped  int
	lastEnd  int // last line of the last finding, for panics that restate it
	banner   bool
	timed    bool // a line with a kernel timestamp was seen
	closed   bool
}

// report is a report being read.
type report struct {
	rule      *compiledRule
	key       int64
	start     int
	end       int
	groups    []string
	endGroups []string
	sev       results.Severity
	inPanic   bool
	anyPhase  bool
	sawTrace  bool
	silent    bool // a panic restating the report just before: no finding
	rip       string
	frames    []string
	before    []string
	head      []string
	headBytes int
	tail      []string
	omitted   int
	lines     int
}

// NewScanner returns a Scanner with opts.
func NewScanner(opts Options) *Scanner {
	if opts.MaxLineLen <= 0 {
		opts.MaxLineLen = defaultMaxLineLen
	}
	if opts.MaxFindings <= 0 {
		opts.MaxFindings = defaultMaxFindings
	}
	if opts.ContextLines <= 0 {
		opts.ContextLines = defaultContextLines
	}
	return &Scanner{opts: opts, t: compiled(), ring: make([][]byte, opts.ContextLines)}
}

// Scan reads r to the end and returns its findings, ordered by StartLine.
func Scan(r io.Reader) ([]Finding, error) {
	s := NewScanner(Options{})
	if _, err := io.Copy(s, r); err != nil {
		return s.Close(), fmt.Errorf("read console: %w", err)
	}
	return s.Close(), nil
}

// Write feeds console bytes. It never fails before Close.
func (s *Scanner) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
			p = p[i+1:]
		} else {
			p = nil
		}
		room := s.opts.MaxLineLen - len(s.line)
		switch {
		case room >= len(chunk):
			s.line = append(s.line, chunk...)
		case room > 0:
			s.line = append(s.line, chunk[:room]...)
			s.over += len(chunk) - room
		default:
			s.over += len(chunk)
		}
		if i >= 0 {
			s.processLine()
		}
	}
	return n, nil
}

// Close ends the stream: a last unterminated line is read, reports still
// open are finished (flagged corrupted when cut short) and every finding is
// returned ordered by StartLine. Later calls return the same findings.
func (s *Scanner) Close() []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		if len(s.line) > 0 || s.over > 0 {
			s.processLine()
		}
		for len(s.open) > 0 {
			r := s.open[0]
			s.finish(r, r.cutShort())
		}
		s.flushPending(-1)
		sort.SliceStable(s.findings, func(i, j int) bool { return s.findings[i].StartLine < s.findings[j].StartLine })
		s.closed = true
	}
	return append([]Finding(nil), s.findings...)
}

// Lines returns the number of complete lines read so far.
func (s *Scanner) Lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lineNo
}

// Dropped returns how many findings were not kept because MaxFindings was reached.
func (s *Scanner) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// processLine handles s.line as one complete line.
func (s *Scanner) processLine() {
	s.lineNo++
	s.sanitize()
	s.line = s.line[:0]
	s.over = 0
	key, msg, timed := parsePrefix(s.clean)
	if len(s.pending) > 0 {
		s.flushPending(s.lineNo)
	}
	var m *compiledRule
	var groups []string
	if timed || !s.timed {
		// Once the kernel stamps its lines, an unstamped line is user space
		// (dockerd, the agent, a probe) and cannot start a report.
		m, groups = s.match(msg)
	}
	s.timed = s.timed || timed
	if r := s.openFor(key); r != nil && s.feed(r, msg, m) {
		s.remember()
		return
	}
	if m != nil && !m.ignore {
		s.start(m, groups, key, msg)
	}
	s.remember()
}

// sanitize copies s.line into s.clean without NULs, CRs, ANSI escape
// sequences and other control characters, and notes a cut line.
func (s *Scanner) sanitize() {
	b := s.clean[:0]
	l := s.line
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c == 0x1b:
			i = skipEscape(l, i)
		case c == '\t' || c >= 0x20 && c != 0x7f:
			b = append(b, c)
		}
	}
	if s.over > 0 {
		b = fmt.Appendf(b, " [... %d bytes cut]", s.over)
	}
	s.clean = b
}

// skipEscape returns the index of the last byte of the escape sequence at l[i].
func skipEscape(l []byte, i int) int {
	if i+1 >= len(l) {
		return i
	}
	switch l[i+1] {
	case '[': // CSI: parameters, then a final byte 0x40-0x7e
		for j := i + 2; j < len(l); j++ {
			if l[j] >= 0x40 && l[j] <= 0x7e {
				return j
			}
		}
		return len(l) - 1
	case ']': // OSC: until BEL or ESC \
		for j := i + 2; j < len(l); j++ {
			if l[j] == 0x07 {
				return j
			}
			if l[j] == 0x1b && j+1 < len(l) && l[j+1] == '\\' {
				return j + 1
			}
		}
		return len(l) - 1
	}
	return i + 1
}

// parsePrefix strips a log level "<4>", a syslog "Mon DD HH:MM:SS host kernel: "
// prefix, the kernel timestamp "[   12.345678]" and the caller "[T123]"/"[C1]".
// key identifies the caller (0: unknown), so that interleaved reports of
// different tasks and CPUs stay apart.
func parsePrefix(l []byte) (key int64, msg []byte, timed bool) {
	if len(l) >= 3 && l[0] == '<' && isDigit(l[1]) && l[2] == '>' {
		l = l[3:]
	}
	if len(l) > 16 && l[3] == ' ' && l[6] == ' ' && l[9] == ':' && l[12] == ':' {
		if i := bytes.Index(l[:min(len(l), 80)], []byte(" kernel: ")); i > 0 {
			l = l[i+len(" kernel: "):]
		}
	}
	rest, ok := skipTimestamp(l)
	if !ok {
		// A timestamp later in the line: user-space output ran into a kernel message.
		for i := 1; i < len(l); i++ {
			if l[i] != '[' {
				continue
			}
			if r, ok2 := skipTimestamp(l[i:]); ok2 {
				rest, ok = r, true
				break
			}
		}
		if !ok {
			return 0, l, false
		}
	}
	l = rest
	if k, r, ok := parseCaller(l); ok {
		key, l = k, r
	}
	if len(l) > 0 && l[0] == ' ' {
		l = l[1:]
	}
	return key, l, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipTimestamp strips "[ 12.345678]".
func skipTimestamp(l []byte) ([]byte, bool) {
	if len(l) < 4 || l[0] != '[' {
		return l, false
	}
	i := 1
	for i < len(l) && l[i] == ' ' {
		i++
	}
	d := i
	for i < len(l) && isDigit(l[i]) {
		i++
	}
	if i == d || i >= len(l) || l[i] != '.' {
		return l, false
	}
	i++
	d = i
	for i < len(l) && isDigit(l[i]) {
		i++
	}
	if i == d || i >= len(l) || l[i] != ']' {
		return l, false
	}
	return l[i+1:], true
}

// parseCaller parses "[    T123]" or "[ C1]".
func parseCaller(l []byte) (int64, []byte, bool) {
	if len(l) < 4 || l[0] != '[' {
		return 0, l, false
	}
	i := 1
	for i < len(l) && l[i] == ' ' {
		i++
	}
	if i >= len(l) || l[i] != 'T' && l[i] != 'C' {
		return 0, l, false
	}
	cpu := l[i] == 'C'
	i++
	var n int64
	d := i
	for i < len(l) && isDigit(l[i]) && i-d < 12 {
		n = n*10 + int64(l[i]-'0')
		i++
	}
	if i == d || i >= len(l) || l[i] != ']' {
		return 0, l, false
	}
	if cpu {
		return -(n + 1), l[i+1:], true
	}
	return n + 1, l[i+1:], true
}

// match returns the first rule whose header matches msg, and its groups.
func (s *Scanner) match(msg []byte) (*compiledRule, []string) {
	// Each distinct key is looked for at most once per line: 0 unknown, 1 absent, 2 present.
	if len(s.keySeen) != len(s.t.keys) {
		s.keySeen = make([]uint8, len(s.t.keys))
	}
	clear(s.keySeen)
	for i := range s.t.rules {
		r := &s.t.rules[i]
		switch s.keySeen[r.keyIdx] {
		case 0:
			if !bytes.Contains(msg, s.t.keys[r.keyIdx]) {
				s.keySeen[r.keyIdx] = 1
				continue
			}
			s.keySeen[r.keyIdx] = 2
		case 1:
			continue
		}
		sm := r.header.FindSubmatch(msg)
		if sm == nil {
			continue
		}
		if r.ignore {
			return r, nil
		}
		groups := make([]string, len(sm))
		for j, g := range sm {
			groups[j] = string(g)
		}
		return r, groups
	}
	return nil, nil
}

func (s *Scanner) openFor(key int64) *report {
	for _, r := range s.open {
		if r.key == key {
			return r
		}
	}
	return nil
}

// remember puts the current line into the context ring.
func (s *Scanner) remember() {
	if len(s.ring) == 0 {
		return
	}
	s.ring[s.ringPos] = append(s.ring[s.ringPos][:0], s.clean...)
	s.ringPos = (s.ringPos + 1) % len(s.ring)
}

// isPanic tells rules whose report is a kernel panic.
func (r *compiledRule) isPanic() bool { return r.rule.marker == endPanic }

// feed offers the current line to the open report r of its context and
// reports whether the line belongs to r. m is the rule the line matches, if any.
func (s *Scanner) feed(r *report, msg []byte, m *compiledRule) bool {
	header := m != nil && !m.ignore
	if !r.inPanic && header && m.isPanic() {
		// panic_on_oops, hung_task_panic, softlockup_panic...: the panic is part of this report.
		r.inPanic = true
		r.sev = results.SevFatal
		s.add(r, msg)
		return true
	}
	if r.inPanic {
		s.add(r, msg)
		if s.t.panicEnd.Match(msg) {
			s.finish(r, false)
		} else if r.lines >= maxReportLines {
			s.finish(r, true)
		}
		return true
	}
	switch r.rule.end {
	case endMarker:
		if sm := r.rule.marker.FindSubmatch(msg); sm != nil {
			s.add(r, msg)
			for _, g := range sm {
				r.endGroups = append(r.endGroups, string(g))
			}
			s.finish(r, false)
			return true
		}
		if header && !r.rule.absorbAll && !r.rule.absorbsCat(m.cat) {
			s.finish(r, true)
			return false
		}
	case endBody:
		if r.anyPhase {
			if header && !r.rule.absorbsCat(m.cat) {
				s.finish(r, true)
				return false
			}
			if r.rule.anyUntil.Match(msg) {
				// The stack that follows names the culprit; frames quoted before it do not.
				r.anyPhase = false
				r.rip, r.frames = "", r.frames[:0]
			}
			break
		}
		if header && !r.rule.absorbsListed(m.cat) {
			s.finish(r, false)
			return false
		}
		if !header && !s.isBody(r, msg) {
			s.finish(r, false)
			return false
		}
	default:
		s.finish(r, false)
		return false
	}
	s.add(r, msg)
	if r.lines >= maxReportLines {
		s.finish(r, true)
	}
	return true
}

// isBody tells whether msg looks like a line of r's report body.
func (s *Scanner) isBody(r *report, msg []byte) bool {
	if len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
		return true // stack frames, register continuations, <TASK> markers
	}
	return s.t.body.Match(msg) || r.rule.body != nil && r.rule.body.Match(msg)
}

func (c *compiledRule) absorbsListed(cat results.Category) bool {
	for _, a := range c.absorbs {
		if a == cat {
			return true
		}
	}
	return false
}

// start opens a report (or records a single-line finding) for rule m.
func (s *Scanner) start(m *compiledRule, groups []string, key int64, msg []byte) {
	if m.banner {
		if !s.banner {
			s.banner = true
			return
		}
		for len(s.open) > 0 {
			s.finish(s.open[0], true)
		}
	}
	r := &report{rule: m, key: key, start: s.lineNo, groups: groups, sev: m.sev, before: s.context()}
	if m.end == endSingle {
		s.add(r, msg)
		s.single(s.build(r, false))
		return
	}
	r.inPanic = m.isPanic()
	r.anyPhase = m.anyUntil != nil
	if m.cat == results.CatKernelPanic && len(groups) > 1 && s.lastEnd > 0 && s.lineNo-s.lastEnd <= consequenceWindow &&
		s.t.consequence.MatchString(groups[1]) {
		r.silent = true
	}
	if len(s.open) >= maxOpenReports {
		s.finish(s.open[0], true)
	}
	s.open = append(s.open, r)
	s.add(r, msg)
}

// context returns the lines before the current one, oldest first.
func (s *Scanner) context() []string {
	n := min(len(s.ring), s.lineNo-1)
	out := make([]string, 0, n)
	for i := n; i > 0; i-- {
		j := (s.ringPos - i + len(s.ring)) % len(s.ring)
		out = append(out, excerptLine(s.ring[j]))
	}
	return out
}

func excerptLine(b []byte) string {
	if len(b) > excerptLineLen {
		return truncateUTF8(string(b[:excerptLineLen]), excerptLineLen) + " [...]"
	}
	return string(b)
}

// add appends the current line to r and collects stack frames from it.
func (s *Scanner) add(r *report, msg []byte) {
	r.lines++
	r.end = s.lineNo
	line := excerptLine(s.clean)
	if len(r.head) < excerptHeadLines && r.headBytes < excerptHeadBytes && len(r.tail) == 0 {
		r.head = append(r.head, line)
		r.headBytes += len(line)
	} else {
		if len(r.tail) >= excerptTailLines {
			copy(r.tail, r.tail[1:])
			r.tail = r.tail[:len(r.tail)-1]
			r.omitted++
		}
		r.tail = append(r.tail, line)
	}
	fp := &s.t.frames
	if bytes.HasPrefix(bytes.TrimLeft(msg, " \t"), []byte("Call ")) {
		r.sawTrace = true
	}
	if !bytes.Contains(msg, []byte("+0x")) {
		return // neither a RIP with a symbol nor a stack frame
	}
	if sm := fp.rip.FindSubmatch(msg); sm != nil {
		if r.rip == "" {
			r.rip = fp.funcName(string(sm[1]))
		}
		return
	}
	if len(r.frames) < maxFrames {
		if sm := fp.frame.FindSubmatch(msg); sm != nil && len(sm[1]) == 0 {
			r.frames = append(r.frames, fp.funcName(string(sm[2])))
			r.sawTrace = true
		}
	}
}

// cutShort tells whether an open report at the end of the stream is incomplete.
func (r *report) cutShort() bool {
	if r.inPanic || r.rule.end == endMarker || r.anyPhase {
		return true
	}
	return strings.Contains(r.rule.title, "{frame}") && !r.sawTrace && r.rip == ""
}

// finish closes r and records its finding.
func (s *Scanner) finish(r *report, corrupted bool) {
	for i, o := range s.open {
		if o == r {
			s.open = append(s.open[:i], s.open[i+1:]...)
			break
		}
	}
	s.lastEnd = r.end
	if r.silent {
		return
	}
	s.push(s.build(r, corrupted))
}

// build turns a report into a Finding.
func (s *Scanner) build(r *report, corrupted bool) Finding {
	var b strings.Builder
	for _, l := range r.before {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, l := range r.head {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if r.omitted > 0 {
		fmt.Fprintf(&b, "[... %d lines omitted ...]\n", r.omitted)
	}
	for _, l := range r.tail {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return Finding{
		Category:  r.rule.cat,
		Severity:  r.sev,
		Title:     s.title(r),
		StartLine: r.start,
		EndLine:   r.end,
		Corrupted: corrupted,
		Excerpt:   b.String(),
	}
}

// title fills r's title format.
func (s *Scanner) title(r *report) string {
	format := r.rule.title
	frame := s.guilty(r)
	if frame == "" {
		format = strings.ReplaceAll(format, " in {frame}", "")
	}
	norm, placeholder := s.t.norm, s.t.placeholder
	t := placeholder.ReplaceAllStringFunc(format, func(p string) string {
		sm := placeholder.FindStringSubmatch(p)
		if sm[2] == "frame" {
			return frame
		}
		groups := r.groups
		if sm[1] == "e" {
			groups = r.endGroups
		}
		i := int(sm[2][0] - '0')
		if i < len(groups) {
			return norm.normalize(groups[i])
		}
		return ""
	})
	t = strings.ReplaceAll(t, "()", "")
	return truncateUTF8(strings.Join(strings.Fields(t), " "), maxTitle)
}

// guilty returns the culprit function: the header's, then RIP's, then the
// first call-trace frame that is not generic.
func (s *Scanner) guilty(r *report) string {
	fp := &s.t.frames
	if g := r.rule.frameGroup; g > 0 && g < len(r.groups) {
		if fn := fp.funcName(r.groups[g]); fn != "" && !fp.isGeneric(fn) {
			return fn
		}
	}
	if r.rip != "" && !fp.isGeneric(r.rip) {
		return r.rip
	}
	for _, fn := range r.frames {
		if fn != "" && !fp.isGeneric(fn) {
			return fn
		}
	}
	return ""
}

// single records a single-line finding, folding repeats of a non-fatal title.
func (s *Scanner) single(f Finding) {
	if f.Severity == results.SevFatal {
		s.push(f)
		return
	}
	for _, p := range s.pending {
		if p.Category == f.Category && p.Title == f.Title {
			p.Count++
			p.EndLine = f.EndLine
			if p.Count <= maxCoalescedLines {
				p.Excerpt += excerptLine(s.clean) + "\n"
			}
			return
		}
	}
	if len(s.pending) >= maxPending {
		s.push(*s.pending[0])
		s.pending = s.pending[1:]
	}
	f.Count = 1
	s.pending = append(s.pending, &f)
}

// flushPending records folded findings not repeated within the window; all of them when now < 0.
func (s *Scanner) flushPending(now int) {
	kept := s.pending[:0]
	for _, p := range s.pending {
		if now >= 0 && now-p.EndLine <= coalesceWindow {
			kept = append(kept, p)
			continue
		}
		s.push(*p)
	}
	for i := len(kept); i < len(s.pending); i++ {
		s.pending[i] = nil
	}
	s.pending = kept
}

// push records a finding.
func (s *Scanner) push(f Finding) {
	if f.Count == 1 {
		f.Count = 0
	}
	s.lastEnd = max(s.lastEnd, f.EndLine)
	if len(s.findings) >= s.opts.MaxFindings {
		s.dropped++
		return
	}
	s.findings = append(s.findings, f)
	if s.opts.OnFinding != nil {
		s.opts.OnFinding(f)
	}
}
