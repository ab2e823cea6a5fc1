package reports

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

func TestParseConstraint(t *testing.T) {
	good := []struct {
		expr   string
		key    string
		op     string
		values []string
	}{
		{"docker >= 20.10", "docker", ">=", []string{"20.10"}},
		{"  kernel<6.12 ", "kernel", "<", []string{"6.12"}},
		{"distro in (debian12, debian13)", "distro", "in", []string{"debian12", "debian13"}},
		{"distro in(debian12)", "distro", "in", []string{"debian12"}},
		{"driver != devicemapper", "driver", "!=", []string{"devicemapper"}},
		{"driver not in (aufs, devicemapper)", "driver", "not in", []string{"aufs", "devicemapper"}},
		{"cgroup == 2", "cgroup", "==", []string{"v2"}},
		{"init == agent", "init", "==", []string{"agent"}},
	}
	for _, g := range good {
		c, err := ParseConstraint(g.expr)
		if err != nil {
			t.Errorf("ParseConstraint(%q): %v", g.expr, err)
			continue
		}
		if c.Key != g.key || c.Op != g.op || !slices.Equal(c.Values, g.values) {
			t.Errorf("ParseConstraint(%q) = %s %s %q, want %s %s %q", g.expr, c.Key, c.Op, c.Values, g.key, g.op, g.values)
		}
	}
	bad := map[string]string{
		"":                        "want KEY OP VALUE",
		"docker":                  "missing or unknown operator",
		"docker >> 20":            "missing or unknown operator",
		"colour == red":           `unknown key "colour"`,
		"docker >= ":              "missing value",
		"distro >= debian12":      "compares versions",
		"distro in debian12":      "wants a list in parentheses",
		"distro in (a,,b)":        "missing value",
		"docker == 20.10 or more": "want one word",
		"driver inx":              "missing or unknown operator",
	}
	for expr, want := range bad {
		_, err := ParseConstraint(expr)
		if err == nil || !errors.Is(err, ErrConstraint) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConstraint(%q) = %v, want an ErrConstraint saying %q", expr, err, want)
		}
	}
}

func TestConstraintMatch(t *testing.T) {
	cases := []struct {
		expr, got string
		want      bool
		why       string
	}{
		{"docker >= 20.10", "20.10.5", true, ""},
		{"docker >= 20.10.24", "20.10.5", false, "docker 20.10.5 is not >= 20.10.24"},
		{"docker < 26", "26.1.5", false, "docker 26.1.5 is not < 26"},
		{"kernel == 6.1", "6.1.0", true, ""},
		{"distro in (debian12, debian13)", "debian11", false, "distro debian11 is not in (debian12, debian13)"},
		{"driver not in (aufs, devicemapper)", "overlay2", true, ""},
		{"kernel > 5.10", "custom", false, "is not a version"},
		{"cgroup == v2", "", false, "cgroup unknown is not == v2"},
	}
	for _, c := range cases {
		con, err := ParseConstraint(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		ok, why := con.Match(c.got)
		if ok != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%q.Match(%q) = %v, %q; want %v, %q", c.expr, c.got, ok, why, c.want, c.why)
		}
	}
}

func mustConstraints(t *testing.T, exprs ...string) []Constraint {
	t.Helper()
	var out []Constraint
	for _, e := range exprs {
		c, err := ParseConstraint(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// TestDecideFixture: the fixture's best cell wins without constraints; with
// a constraint that excludes it the best remaining one has only 3/3 runs,
// too little evidence; a constraint nothing meets gives "none qualifies"
// with the nearest cells and why.
func TestDecideFixture(t *testing.T) {
	r := loadBasic(t)
	d := r.Decide(nil)
	if d.Outcome != OutcomeWinner || d.Winner.Cell != "k6.12-debian13-docker26.1.5-overlay2" || d.RunnerUp == nil {
		t.Fatalf("no constraints: %+v", d)
	}
	if d.Winner.LastFailure == nil || d.Winner.LastFailure.Verdict != results.ProbeFailure {
		t.Errorf("winner's last failure = %+v, want the probe failure", d.Winner.LastFailure)
	}
	if d.Winner.PBest <= d.RunnerUp.PBest {
		t.Errorf("P(best) winner %.2f <= runner-up %.2f", d.Winner.PBest, d.RunnerUp.PBest)
	}
	if again := r.Decide(nil); again.Winner.PBest != d.Winner.PBest {
		t.Errorf("P(best) not reproducible: %v then %v", d.Winner.PBest, again.Winner.PBest)
	}

	d = r.Decide(mustConstraints(t, "kernel != 6.12"))
	if d.Outcome != OutcomeTooLittleEvidence || d.Winner.Cell != "k6.1-debian12-docker20.10.24-overlay2" {
		t.Errorf("kernel != 6.12: %s (%+v)", d.Outcome, d.Winner)
	}
	if d.RunnerUp == nil || d.RunnerUp.Cell != "k6.1-debian12-docker26.1.5-overlay2" || !strings.Contains(d.RunnerUp.Why, "") {
		t.Errorf("kernel != 6.12: runner-up %+v", d.RunnerUp)
	}

	d = r.Decide(mustConstraints(t, "docker >= 26", "kernel < 6.12"))
	if d.Outcome != OutcomeTooLittleEvidence || d.Winner.Cell != "k6.1-debian12-docker26.1.5-overlay2" || d.Winner.Warned != 1 {
		t.Errorf("docker >= 26, kernel < 6.12: %s %+v", d.Outcome, d.Winner)
	}

	d = r.Decide(mustConstraints(t, "driver == zfs"))
	if d.Outcome != OutcomeNoneQualifies || d.Winner != nil || len(d.Disqualified) == 0 {
		t.Fatalf("driver == zfs: %+v", d)
	}
	if got := d.Disqualified[0].Reasons; len(got) != 1 || !strings.Contains(got[0], "driver overlay2 is not == zfs") {
		t.Errorf("nearest candidate's reasons = %q", got)
	}
}

// TestDecidePrefersCleanCells: same evidence, one cell's kernel warned; the
// clean one wins and the runner-up says it lost on kernel warnings.
func TestDecidePrefersCleanCells(t *testing.T) {
	warn := results.Finding{Source: "console", Category: results.CatLockdep, Severity: results.SevError,
		Title: "possible circular locking dependency detected"}
	f := &results.File{RunID: "x"}
	for i := range 6 {
		f.Runs = append(f.Runs, results.Run{Cell: "clean", Repeat: i, Verdict: results.Pass})
		w := results.Run{Cell: "warns", Repeat: i, Verdict: results.Pass}
		if i%2 == 0 {
			w.Findings = []results.Finding{warn}
		}
		f.Runs = append(f.Runs, w)
	}
	r, err := Build(t.Context(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Decide(nil)
	if d.Outcome != OutcomeWinner || d.Winner.Cell != "clean" {
		t.Fatalf("winner = %+v, want clean", d.Winner)
	}
	if !strings.Contains(d.RunnerUp.Why, "kernel printed warnings in 3 of 6 passes") ||
		!strings.Contains(d.RunnerUp.Why, warn.Title) {
		t.Errorf("runner-up why = %q", d.RunnerUp.Why)
	}
	if d.Winner.PBest < 0.8 {
		t.Errorf("P(best) of the clean cell = %.2f, want it clearly preferred", d.Winner.PBest)
	}
}
