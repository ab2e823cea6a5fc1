package reports

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds arbitrary results.json documents through the loader and
// every writer: errors are fine, panics and unsafe output are not.
func FuzzDecode(f *testing.F) {
	basic, err := os.ReadFile("testdata/basic/results.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(basic)
	f.Add([]byte(`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"c","verdict":"pass","repeat":1}]}`))
	f.Add([]byte(`{"schema":"matrixctl.results/v1","run_id":"x","runs":null}`))
	f.Add([]byte(`{"schema":"matrixctl.results/v1","run_id":"x","runs":[{"cell":"<script>","verdict":"hang","findings":[{"title":"\u001b[1m","start_line":-5,"end_line":-9}]}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		rf, err := Decode(bytes.NewReader(doc))
		if err != nil {
			return
		}
		r, err := Build(context.Background(), rf, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJUnit(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteMarkdown(&b); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		if err := r.WriteHTML(&b, HTMLOptions{}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(b.String(), "<script>") && strings.Count(b.String(), "<script>") != 1 {
			t.Fatalf("html has an injected script element")
		}
	})
}

// FuzzCleanLine checks that cleaned text is valid UTF-8, has no control
// characters and is bounded.
func FuzzCleanLine(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[31mred\x1b[0m", "\x1b]8;;http://x\x07link\x1b]8;;\x07", "\xff\xfe", "a\x00b\x7f", strings.Repeat("é", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := CleanLine(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Fatalf("control character %U in %q", r, out)
			}
		}
		if len(out) > 4*MaxLineBytes+64 {
			t.Fatalf("output of %d bytes for %d input bytes", len(out), len(s))
		}
	})
}

// FuzzReadLines checks the streaming console reader against a simple split.
func FuzzReadLines(f *testing.F) {
	f.Add("a\nb\nc", 1, 3)
	f.Add("\n\n\n", 2, 2)
	f.Add("x\r\ny", 1, 1)
	f.Fuzz(func(t *testing.T, s string, from, to int) {
		if from < 1 || to < from || to > 1000 {
			return
		}
		got, err := readLines(strings.NewReader(s), []lineRange{{from, to}})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(s, "\n")
		if strings.HasSuffix(s, "\n") {
			lines = lines[:len(lines)-1]
		}
		for n := from; n <= to; n++ {
			text, ok := got[n]
			if n > len(lines) {
				if ok {
					t.Fatalf("line %d beyond the end: %q", n, text)
				}
				continue
			}
			if want := CleanLine(strings.TrimRight(lines[n-1], "\r")); text != want && len(lines[n-1]) < MaxLineBytes {
				t.Fatalf("line %d = %q, want %q", n, text, want)
			}
		}
	})
}

// FuzzParseConstraint: --require is outside input. Parsing never panics, an
// error always wraps ErrConstraint, a parsed constraint parses again to the
// same thing from its own expression, and matching never panics.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"docker >= 20.10", "distro in (debian12, debian13)", "driver not in (aufs)",
		"cgroup == 2", "kernel<6.12", "x", "docker >> 1", "distro in (", "init == agent"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := ParseConstraint(expr)
		if err != nil {
			if !errors.Is(err, ErrConstraint) {
				t.Fatalf("error does not wrap ErrConstraint: %v", err)
			}
			return
		}
		again, err := ParseConstraint(c.Expr)
		if err != nil || again.Key != c.Key || again.Op != c.Op || !slices.Equal(again.Values, c.Values) {
			t.Fatalf("%q parsed to %+v, its expression to %+v, %v", expr, c, again, err)
		}
		for _, v := range []string{"", "20.10.5", "debian12", "v2", expr} {
			c.Match(v)
		}
	})
}
