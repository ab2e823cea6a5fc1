package console

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzScan checks the scanner's invariants on any input: no panic, line
// numbers within the stream, fatal reports with StartLine <= EndLine, valid
// UTF-8 titles, and the same findings from the live (chunked Write) and the
// offline (Scan) paths.
func FuzzScan(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(corpusDir, "*", "*.log"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) > 16<<10 {
			data = data[:16<<10]
		}
		f.Add(data, uint8(7))
	}
	f.Add([]byte("[ 1.0] BUG: KASAN: x in y\n[ 1.1] Kernel panic - not syncing: z\r\n\x00\x1b[1m"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		want, err := Scan(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		for _, f := range want {
			if f.StartLine < 1 || f.EndLine > lines || f.StartLine > f.EndLine {
				t.Fatalf("finding %v outside lines 1-%d", f, lines)
			}
			if !utf8.ValidString(f.Title) {
				t.Fatalf("title not valid UTF-8: %q", f.Title)
			}
		}
		size := int(chunk)%64 + 1
		s := NewScanner(Options{})
		for i := 0; i < len(data); i += size {
			if _, err := s.Write(data[i:min(len(data), i+size)]); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.Close(); !reflect.DeepEqual(got, want) {
			t.Fatalf("chunked Write gave %v, Scan gave %v", got, want)
		}
	})
}
