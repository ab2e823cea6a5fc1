package matrix

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary text to the spec loader: it must never panic, an
// error must be a list of *SpecErrors that each name the file, and a spec it
// accepts must plan into cells with unique, directory-safe IDs.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, "../matrix.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(header + "axes: {kernel: [&a {version: '1', box: b}], distro: [debian12], docker: [distro], driver: [vfs]}\ninclude: [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			if s != nil {
				t.Fatal("Parse returned a spec and an error")
			}
			var joined interface{ Unwrap() []error }
			list := []error{err}
			if errors.As(err, &joined) {
				list = joined.Unwrap()
			}
			for _, e := range list {
				var se *SpecError
				if !errors.As(e, &se) {
					t.Fatalf("error %T %v is not a *SpecError", e, e)
				}
				if !strings.HasPrefix(e.Error(), "fuzz.yaml") {
					t.Fatalf("error %q does not name the file", e)
				}
			}
			return
		}
		cells, err := s.Plan()
		if err != nil {
			t.Fatalf("a loaded spec failed to plan: %v", err)
		}
		if len(cells) == 0 || len(cells) > MaxCells {
			t.Fatalf("%d cells", len(cells))
		}
		seen := map[string]bool{}
		for _, c := range cells {
			if !safeID.MatchString(c.ID) || seen[c.ID] {
				t.Fatalf("bad or duplicate ID %q", c.ID)
			}
			seen[c.ID] = true
			if c.Status == StatusUnsupported && c.Reason == "" {
				t.Fatalf("cell %s is unsupported without a reason", c.ID)
			}
		}
	})
}
