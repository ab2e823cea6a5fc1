package matrix

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wantErrors reads the "# error: ..." header lines of an invalid-*.yaml file.
func wantErrors(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "# error: "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func TestLoadTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			t.Chdir("testdata")
			spec, err := Load(name)
			switch {
			case strings.HasPrefix(name, "valid-"):
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				cells, err := spec.Plan()
				if err != nil || len(cells) == 0 {
					t.Fatalf("Plan: %d cells, %v", len(cells), err)
				}
			case strings.HasPrefix(name, "invalid-"):
				if err == nil {
					t.Fatal("Load succeeded; want an error")
				}
				var se *SpecError
				if !errors.As(err, &se) {
					t.Fatalf("error %v is not a *SpecError", err)
				}
				want := wantErrors(t, name)
				if len(want) == 0 {
					t.Fatalf("%s has no '# error:' lines; got:\n%v", name, err)
				}
				for _, w := range want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q; got:\n%v", w, err)
					}
				}
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.HasPrefix(line, name+":") {
						t.Errorf("error line %q does not start with the file name", line)
					}
				}
			default:
				t.Fatalf("testdata file %s is neither valid-* nor invalid-*", name)
			}
		})
	}
}
