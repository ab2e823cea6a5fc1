package reports

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// Limits for untrusted text shown in a report.
const (
	// MaxLineBytes is the longest console/probe line shown; longer lines are
	// cut and end with a marker saying how much was cut.
	MaxLineBytes = 1000
	// MaxBlockBytes bounds one block of text (an excerpt, checker output).
	MaxBlockBytes = 64 << 10
	// excerptContext is the number of console lines shown around a finding.
	excerptContext = 5
	// maxExcerptLines bounds the lines of one console excerpt.
	maxExcerptLines = 200
)

// CleanLine makes one line of untrusted text safe to show as text: invalid
// UTF-8 becomes U+FFFD, ANSI escape sequences are removed, other control
// characters become their visible Unicode control pictures (␛, ␇, ...), and
// a line longer than MaxLineBytes is cut with a "[… N bytes cut]" marker.
// Markup escaping is the renderer's job (html/template, encoding/xml).
func CleanLine(s string) string {
	cut := 0
	if len(s) > MaxLineBytes {
		// Cut on a rune boundary.
		n := MaxLineBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		cut = len(s) - n
		s = s[:n]
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b { // ESC: drop a CSI/OSC sequence, show a lone ESC
			if n := ansiLen(s[i:]); n > 0 {
				i += n
				continue
			}
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteRune('\uFFFD')
		case r == '\t':
			b.WriteString("    ")
		case r < 0x20:
			b.WriteRune(0x2400 + r) // control pictures block
		case r == 0x7f:
			b.WriteRune('\u2421')
		case r >= 0x80 && r < 0xa0, r == '\u2028', r == '\u2029', r == '\u202e', r == '\u202d':
			fmt.Fprintf(&b, "\\u%04x", r) // C1 controls, line separators, bidi overrides
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if cut > 0 {
		fmt.Fprintf(&b, " [… %d bytes cut]", cut)
	}
	return b.String()
}

// ansiLen returns the length of the escape sequence at the start of s (which
// starts with ESC), or 0 when it is not a complete CSI, OSC or two-byte sequence.
func ansiLen(s string) int {
	if len(s) < 2 {
		return 0
	}
	switch s[1] {
	case '[': // CSI: parameters and intermediates, then a final byte 0x40–0x7e
		for i := 2; i < len(s) && i < 64; i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
			if s[i] < 0x20 || s[i] > 0x7e {
				return 0
			}
		}
		return 0
	case ']': // OSC: ends with BEL or ESC \
		for i := 2; i < len(s) && i < 512; i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return 0
	default:
		if s[1] >= 0x40 && s[1] <= 0x5f {
			return 2
		}
		return 0
	}
}

// CleanBlock cleans multi-line text line by line and bounds its total size.
func CleanBlock(s string) string {
	cut := 0
	if len(s) > MaxBlockBytes {
		cut = len(s) - MaxBlockBytes
		s = s[:MaxBlockBytes]
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = CleanLine(l)
	}
	out := strings.Join(lines, "\n")
	if cut > 0 {
		out += fmt.Sprintf("\n[… %d bytes cut]", cut)
	}
	return out
}

// Line is one numbered console line of an excerpt.
type Line struct {
	N    int    `json:"n"`
	Text string `json:"text"`
	// Hit marks the lines a finding points at.
	Hit bool `json:"hit,omitempty"`
}

// lineRange is an inclusive range of 1-based line numbers.
type lineRange struct{ from, to int }

// readLines streams r and returns the cleaned lines whose numbers fall into
// any of ranges. Lines are never held longer than MaxLineBytes (plus one
// read buffer), so a 10 MB console line costs no more than a short one.
func readLines(r io.Reader, ranges []lineRange) (map[int]string, error) {
	last := 0
	for _, rg := range ranges {
		last = max(last, rg.to)
	}
	want := func(n int) bool {
		for _, rg := range ranges {
			if n >= rg.from && n <= rg.to {
				return true
			}
		}
		return false
	}
	out := map[int]string{}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; n <= last; n++ {
		var keep []byte
		dropped := 0
		eof := false
		for {
			chunk, err := br.ReadSlice('\n')
			if len(keep) < MaxLineBytes+4 {
				take := min(len(chunk), MaxLineBytes+4-len(keep))
				keep = append(keep, chunk[:take]...)
				dropped += len(chunk) - take
			} else {
				dropped += len(chunk)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return nil, err
				}
				eof = true
			}
			break
		}
		if eof && len(keep) == 0 && dropped == 0 {
			break
		}
		if want(n) {
			line := strings.TrimRight(string(keep), "\r\n")
			if dropped > 0 {
				// Make CleanLine's cut marker count the bytes we never kept.
				line = CleanLine(line)
				line = strings.TrimSuffix(line, cutMarkerOf(line))
				line += fmt.Sprintf(" [… %d+ bytes cut]", dropped)
			} else {
				line = CleanLine(line)
			}
			out[n] = line
		}
		if eof {
			break
		}
	}
	return out, nil
}

// cutMarkerOf returns CleanLine's trailing cut marker in s, if any.
func cutMarkerOf(s string) string {
	i := strings.LastIndex(s, " [… ")
	if i < 0 || !strings.HasSuffix(s, " bytes cut]") {
		return ""
	}
	return s[i:]
}

// consoleExcerpt reads the lines around [start, end] from the console file.
func consoleExcerpt(file string, start, end int) ([]Line, error) {
	if start <= 0 {
		return nil, nil
	}
	end = max(end, start)
	from := max(1, start-excerptContext)
	to := min(end+excerptContext, from+maxExcerptLines-1)
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	got, err := readLines(fh, []lineRange{{from, to}})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var lines []Line
	for n := from; n <= to; n++ {
		text, ok := got[n]
		if !ok {
			break
		}
		lines = append(lines, Line{N: n, Text: text, Hit: n >= start && n <= end})
	}
	return lines, nil
}

// tailLines returns the last n cleaned lines of file, streaming it with a
// bounded ring so a huge log costs no more memory than a small one.
func tailLines(file string, n int) ([]Line, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	ring := make([]Line, 0, n)
	br := bufio.NewReaderSize(fh, 64<<10)
	for num := 1; ; num++ {
		var keep []byte
		dropped := 0
		var rerr error
		for {
			chunk, err := br.ReadSlice('\n')
			take := min(len(chunk), max(0, MaxLineBytes+4-len(keep)))
			keep = append(keep, chunk[:take]...)
			dropped += len(chunk) - take
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			rerr = err
			break
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, fmt.Errorf("read %s: %w", file, rerr)
		}
		if len(keep) == 0 && dropped == 0 && rerr != nil {
			break
		}
		text := CleanLine(strings.TrimRight(string(keep), "\r\n"))
		if dropped > 0 {
			text = strings.TrimSuffix(text, cutMarkerOf(text)) + fmt.Sprintf(" [… %d+ bytes cut]", dropped)
		}
		if len(ring) == n {
			copy(ring, ring[1:])
			ring = ring[:n-1]
		}
		ring = append(ring, Line{N: num, Text: text})
		if rerr != nil {
			break
		}
	}
	return ring, nil
}
