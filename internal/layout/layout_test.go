package layout

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// rule forbids packages matching from to import packages matching to.
// Patterns are module-relative import paths; a "..." element matches any
// number of path elements, so "runner/..." is runner and everything under it.
type rule struct {
	from   string
	to     []string
	reason string
}

// rules are the boundaries of README's layout table. Each row is checked
// against every package's non-test imports; tests may import anything.
var rules = []rule{
	{"...", []string{"cmd/...", ".../cmd/..."},
		"commands are wiring at the top: nothing builds on them"},
	{"matrix/...", []string{"runner/...", "probes/...", "reports/...", "vagrant/..."},
		"the spec is pure planning: it knows nothing of how cells run or are reported (and leaves may import it)"},
	{"runner", []string{"runner/qemu/...", "runner/vagrant/...", "runner/local/..."},
		"the core owns the Provider interface; cmd/matrixctl picks the provider"},
	{"runner", []string{"reports/...", "vagrant/..."},
		"the core writes results; reports read them from results.json, vagrant is a provider's concern"},
	{"runner/qemu/...", []string{"runner/vagrant/...", "runner/local/...", "reports/..."},
		"a provider stands alone behind runner.Provider"},
	{"runner/vagrant/...", []string{"runner/qemu/...", "runner/local/...", "reports/..."},
		"a provider stands alone behind runner.Provider"},
	{"runner/local/...", []string{"runner/qemu/...", "runner/vagrant/...", "reports/..."},
		"a provider stands alone behind runner.Provider"},
	{"runner/agent/...", beyondRunnerLeaves,
		"the guest agent is a static binary inside the VM: the protocol and leaves only"},
	{"runner/agentproto/...", beyondRunnerLeaves,
		"the host↔guest protocol is shared by the agent and the providers: leaves only"},
	{"runner/console/...", beyondRunnerLeaves,
		"console analysis serves the core and the CLI: leaves only"},
	{"runner/fscheck/...", beyondRunnerLeaves,
		"the host checker serves the core: leaves only"},
	{"runner/bisect/...", []string{"runner/qemu/...", "runner/vagrant/...", "runner/local/...", "reports/...", "vagrant/..."},
		"a bisection drives the core's runs behind runner.Provider; cmd/matrixctl picks the provider"},
	{"runner/faults/...", []string{"..."},
		"the fault-injection suite is tests only; its package proper is a doc comment"},
	{"probes/...", []string{"runner/...", "matrix/...", "reports/...", "vagrant/..."},
		"probes run against any dockerd; the runner calls them, never the reverse"},
	{"reports/...", []string{"runner/...", "probes/...", "matrix/...", "vagrant/..."},
		"reports read results.json (the results leaf), also for runs made elsewhere"},
	{"vagrant/...", []string{"runner/...", "probes/...", "reports/..."},
		"box building needs the spec and the artifact cache only"},
	{"api/...", []string{"..."},
		"the public results schema: whatever it imported, every reader of results.json would too"},
	{"internal/...", []string{"runner/...", "probes/...", "reports/...", "vagrant/..."},
		"leaves are shared by the parts, so they import none; matrix is allowed because it is " +
			"itself a leaf to them (it imports no part: the matrix row), and internal/images fetches a matrix.KernelRef"},
}

// beyondRunnerLeaves is what the runner's own leaves (agent, protocol,
// console analysis, host checker) must not import: the core, the providers
// and the other parts.
var beyondRunnerLeaves = []string{
	"runner", "runner/qemu/...", "runner/vagrant/...", "runner/local/...",
	"matrix/...", "probes/...", "reports/...", "vagrant/...",
}

// wiring may import anything: it is where the parts meet.
const wiring = "cmd/..."

func TestImportBoundaries(t *testing.T) {
	pkgs := modulePackages(t)
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, r := range rules {
		if !slices.ContainsFunc(names, func(p string) bool { return match(r.from, p) }) {
			t.Errorf("rule %q → %v: no package matches %q; update the table", r.from, r.to, r.from)
		}
	}
	for _, p := range names {
		if !match(wiring, p) && !slices.ContainsFunc(rules, func(r rule) bool { return r.from != "..." && match(r.from, p) }) {
			t.Errorf("%s falls under no row of the rule table: add its room or leaf", p)
		}
		for _, imp := range pkgs[p] {
			for _, r := range rules {
				if !match(r.from, p) || r.from != "..." && match(r.from, imp) {
					continue // a room may import itself
				}
				for _, to := range r.to {
					if match(to, imp) {
						t.Errorf("%s imports %s: forbidden by %q ↛ %q: %s", p, imp, r.from, to, r.reason)
					}
				}
			}
		}
	}
}

// modulePackages lists the module's packages with their non-test imports of
// the module itself, all as module-relative paths ("" is the module root).
func modulePackages(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", mod+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	rel := func(p string) (string, bool) {
		if p == mod {
			return "", true
		}
		r, ok := strings.CutPrefix(p, mod+"/")
		return r, ok
	}
	pkgs := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		p, _ := rel(f[0])
		pkgs[p] = nil
		for _, imp := range f[1:] {
			if r, ok := rel(imp); ok {
				pkgs[p] = append(pkgs[p], r)
			}
		}
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %s/... found no packages", mod)
	}
	return pkgs
}

// match reports whether the module-relative path p matches pattern.
func match(pattern, p string) bool {
	return matchElems(strings.Split(pattern, "/"), strings.Split(p, "/"))
}

func matchElems(pat, p []string) bool {
	if len(pat) == 0 {
		return len(p) == 0
	}
	if pat[0] == "..." {
		for i := 0; i <= len(p); i++ {
			if matchElems(pat[1:], p[i:]) {
				return true
			}
		}
		return false
	}
	return len(p) > 0 && pat[0] == p[0] && matchElems(pat[1:], p[1:])
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, p string
		want       bool
	}{
		{"runner", "runner", true},
		{"runner", "runner/qemu", false},
		{"runner/...", "runner", true},
		{"runner/...", "runner/qemu/x", true},
		{"runner/...", "runnerx", false},
		{".../cmd/...", "probes/cmd/matrixctl-probe", true},
		{".../cmd/...", "cmd/matrixctl", true},
		{".../cmd/...", "probes/command", false},
		{"...", "results", true},
	} {
		if got := match(tc.pattern, tc.p); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.p, got, tc.want)
		}
	}
}
