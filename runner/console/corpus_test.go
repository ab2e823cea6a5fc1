package console

import (
	"bytes"
	"flag"
	"fmt"
	"github.com/matrixctl/matrixctl/api/results"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var flagUpdate = flag.Bool("update", false, "rewrite the expected-findings headers of testdata/console")

// corpusDir holds <group>/<name>.log files: header lines, a blank line, the raw log.
// Group "clean" must give no error or fatal finding; group "real" holds logs from kernels
// booted by the project. A file without headers is a raw log: -update adds them.
const corpusDir = "testdata/console"

// corpusFile is one parsed corpus file.
type corpusFile struct {
	path   string
	group  string
	source string
	notes  []string
	want   []expect
	raw    []byte
	bare   bool // no header yet
}

// expect is the part of a Finding the corpus pins down.
type expect struct {
	Category  results.Category
	Severity  results.Severity
	Title     string
	Start     int
	End       int
	Corrupted bool
}

func (e expect) String() string {
	c := ""
	if e.Corrupted {
		c = " (corrupted)"
	}
	return fmt.Sprintf("%d-%d %s %s %q%s", e.Start, e.End, e.Severity, e.Category, e.Title, c)
}

func expectOf(f Finding) expect {
	return expect{f.Category, f.Severity, f.Title, f.StartLine, f.EndLine, f.Corrupted}
}

var headerKeys = []string{"SOURCE", "NOTE", "CATEGORY", "SEVERITY", "TITLE", "LINES", "CORRUPTED"}

func isHeaderLine(l string) bool {
	for _, k := range headerKeys {
		if strings.HasPrefix(l, k+": ") || l == k+":" {
			return true
		}
	}
	return false
}

func parseCorpusFile(path string, data []byte) (*corpusFile, error) {
	cf := &corpusFile{path: path, group: filepath.Base(filepath.Dir(path))}
	first, _, _ := strings.Cut(string(data[:min(len(data), 200)]), "\n")
	if !isHeaderLine(first) {
		cf.bare, cf.raw = true, data
		return cf, nil
	}
	rest := data
	lineNo := 0
	for {
		lineNo++
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, fmt.Errorf("%s: no blank line after the headers", path)
		}
		l := string(rest[:i])
		rest = rest[i+1:]
		if l == "" {
			break
		}
		key, val, ok := strings.Cut(l, ":")
		val = strings.TrimSpace(val)
		if !ok || !isHeaderLine(l) {
			return nil, fmt.Errorf("%s:%d: not a header line: %q", path, lineNo, l)
		}
		if key == "CATEGORY" {
			cf.want = append(cf.want, expect{Category: results.Category(val)})
			continue
		}
		switch key {
		case "SOURCE":
			cf.source = val
			continue
		case "NOTE":
			cf.notes = append(cf.notes, val)
			continue
		}
		if len(cf.want) == 0 {
			return nil, fmt.Errorf("%s:%d: %s before CATEGORY", path, lineNo, key)
		}
		w := &cf.want[len(cf.want)-1]
		switch key {
		case "SEVERITY":
			w.Severity = results.Severity(val)
		case "TITLE":
			w.Title = val
		case "CORRUPTED":
			w.Corrupted = val == "true"
		case "LINES":
			a, b, _ := strings.Cut(val, "-")
			var err1, err2 error
			w.Start, err1 = strconv.Atoi(a)
			w.End, err2 = strconv.Atoi(b)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%s:%d: bad LINES %q", path, lineNo, val)
			}
		}
	}
	cf.raw = rest
	return cf, nil
}

func (cf *corpusFile) render(got []Finding) []byte {
	var b bytes.Buffer
	src := cf.source
	if src == "" {
		src = "synthetic"
		if cf.group == "real" {
			src = "real"
		}
	}
	fmt.Fprintf(&b, "SOURCE: %s\n", src)
	for _, n := range cf.notes {
		fmt.Fprintf(&b, "NOTE: %s\n", n)
	}
	for _, f := range got {
		fmt.Fprintf(&b, "CATEGORY: %s\nSEVERITY: %s\nTITLE: %s\nLINES: %d-%d\n", f.Category, f.Severity, f.Title, f.StartLine, f.EndLine)
		if f.Corrupted {
			b.WriteString("CORRUPTED: true\n")
		}
	}
	b.WriteByte('\n')
	b.Write(cf.raw)
	return b.Bytes()
}

func loadCorpus(t testing.TB) []*corpusFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(corpusDir, "*", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no corpus files under %s", corpusDir)
	}
	var out []*corpusFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := parseCorpusFile(p, data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cf)
	}
	return out
}

func TestCorpus(t *testing.T) {
	for _, cf := range loadCorpus(t) {
		t.Run(cf.group+"/"+filepath.Base(cf.path), func(t *testing.T) {
			got, err := Scan(bytes.NewReader(cf.raw))
			if err != nil {
				t.Fatal(err)
			}
			if *flagUpdate {
				if err := os.WriteFile(cf.path, cf.render(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if cf.bare {
				t.Fatalf("%s has no expected-findings header; run go test ./runner/console -run TestCorpus -update and review the diff", cf.path)
			}
			for i := 0; i < max(len(got), len(cf.want)); i++ {
				switch {
				case i >= len(got):
					t.Errorf("%s: missing finding %v", cf.path, cf.want[i])
				case i >= len(cf.want):
					t.Errorf("%s: unexpected finding %v\n%s", cf.path, expectOf(got[i]), got[i].Excerpt)
				case expectOf(got[i]) != cf.want[i]:
					t.Errorf("%s: finding %d\n got %v\nwant %v", cf.path, i, expectOf(got[i]), cf.want[i])
				}
			}
			for _, f := range got {
				if f.StartLine < 1 || f.StartLine > f.EndLine {
					t.Errorf("%s: bad line range %v", cf.path, f)
				}
				if cf.group == "clean" && f.Severity.Rank() >= results.SevError.Rank() {
					t.Errorf("%s: %s finding in the clean corpus: %v\n%s", cf.path, f.Severity, f, f.Excerpt)
				}
			}
		})
	}
}

// TestCorpusCoversEveryCategory keeps a proof for each category in the corpus
// (console-silent comes from the runner's clock, not from console text).
func TestCorpusCoversEveryCategory(t *testing.T) {
	seen := map[results.Category][]string{}
	for _, cf := range loadCorpus(t) {
		for _, w := range cf.want {
			seen[w.Category] = append(seen[w.Category], cf.path)
		}
	}
	for _, r := range rules() {
		if r.ignore {
			continue
		}
		if len(seen[r.cat]) == 0 {
			t.Errorf("no corpus file proves category %s", r.cat)
		}
	}
}

// TestCleanCorpusSize keeps the clean corpus from shrinking unnoticed.
func TestCleanCorpusSize(t *testing.T) {
	var files, lines int
	for _, cf := range loadCorpus(t) {
		if cf.group == "clean" {
			files++
			lines += bytes.Count(cf.raw, []byte("\n"))
		}
	}
	t.Logf("clean corpus: %d files, %d lines", files, lines)
	if files < 5 {
		t.Errorf("clean corpus has %d files, want at least 5", files)
	}
}

// TestCategoryTableMatchesRules keeps the shared category table
// (results.ConsoleCategories) and what the scanner can emit in step: every
// category a rule or Silent emits has a row, and every row is emitted.
func TestCategoryTableMatchesRules(t *testing.T) {
	emitted := map[results.Category]bool{Silent(time.Second, 1).Category: true}
	for _, r := range rules() {
		if !r.ignore {
			emitted[r.cat] = true
		}
	}
	inTable := map[results.Category]bool{}
	for _, ci := range results.ConsoleCategories() {
		inTable[ci.Category] = true
		if !emitted[ci.Category] {
			t.Errorf("category %s is in the results table but no console rule emits it", ci.Category)
		}
	}
	for c := range emitted {
		if !inTable[c] {
			t.Errorf("the console emits category %s, which the results table does not list", c)
		}
	}
}
