package proc_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// processStarters are the ways around this package: importing os/exec, or
// the lower-level calls that fork a child.
var processStarters = map[string]bool{"os.StartProcess": true, "syscall.ForkExec": true, "syscall.StartProcess": true, "syscall.Exec": true}

// startersAllowed are the directories (relative to the module root) whose
// non-test files may start processes without this package.
var startersAllowed = map[string]string{
	"internal/proc": "this package",
	"runner/agent":  "the guest agent is PID 1 in the guest and reaps every child itself",
}

// TestOnlyProcStartsProcesses fails when a non-test file outside
// startersAllowed imports os/exec or forks a child itself: every host-side
// child goes through proc, with its process group, Pdeathsig and reaping.
// Tests may start processes as they like.
func TestOnlyProcStartsProcesses(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if _, ok := startersAllowed[rel]; ok || (rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "os/exec" {
				t.Errorf("%s imports os/exec: start children with internal/proc (Run, Start, LookPath)", fset.Position(imp.Pos()))
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && processStarters[x.Name+"."+sel.Sel.Name] {
					t.Errorf("%s calls %s.%s: start children with internal/proc", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s: is the walk rooted at the module?", checked, root)
	}
}
