package reports

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Constraint is one requirement on a cell's axes, as given to
// `matrixctl recommend --require`: KEY OP VALUE.
//
//	KEY    kernel, distro, docker, driver, init, cgroup, scratch, cell
//	OP     == != >= <= > <   in (a, b, ...)   not in (a, b, ...)
//
// Ordered operators compare versions (hashicorp/go-version: 20.10.5 <
// 20.10.24); == and != and in compare versions when both sides are
// versions (6.1 == 6.1.0), else the text. cgroup values are "v1"/"v2" (a
// bare 1 or 2 is read the same way); scratch is the scratch filesystem
// ("default" when the cell uses its driver's default).
type Constraint struct {
	Key    string
	Op     string
	Values []string
	// Expr is the expression as written.
	Expr string
}

// ConstraintKeys are the keys a constraint may name.
func ConstraintKeys() []string {
	return []string{"kernel", "distro", "docker", "driver", "init", "cgroup", "scratch", "cell"}
}

// constraintOps are the operators, longest first so ">=" is not read as ">".
var constraintOps = []string{"not in", "in", "==", "!=", ">=", "<=", ">", "<"}

// ErrConstraint is wrapped by every error ParseConstraint returns.
var ErrConstraint = errors.New("bad constraint")

// ParseConstraint parses "KEY OP VALUE". Errors name the expression and say
// what was expected.
func ParseConstraint(expr string) (Constraint, error) {
	bad := func(format string, a ...any) (Constraint, error) {
		return Constraint{}, fmt.Errorf("%w %q: %s", ErrConstraint, CleanLine(expr), fmt.Sprintf(format, a...))
	}
	s := strings.TrimSpace(expr)
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z') })
	if i < 0 {
		i = len(s)
	}
	if i == 0 {
		return bad("want KEY OP VALUE with KEY one of %s", strings.Join(ConstraintKeys(), ", "))
	}
	key := s[:i]
	if !slices.Contains(ConstraintKeys(), key) {
		return bad("unknown key %q; want one of %s", key, strings.Join(ConstraintKeys(), ", "))
	}
	rest := strings.TrimSpace(s[i:])
	op := ""
	for _, o := range constraintOps {
		if strings.HasPrefix(rest, o) {
			after := rest[len(o):]
			// "in" and "not in" are words: "inx" is not "in x".
			if (o == "in" || o == "not in") && after != "" && after[0] != ' ' && after[0] != '(' {
				continue
			}
			op, rest = o, strings.TrimSpace(after)
			break
		}
	}
	if op == "" || strings.ContainsAny(rest[:min(1, len(rest))], "<>=!") {
		return bad("missing or unknown operator; want ==, !=, >=, <=, >, <, in (a, b) or not in (a, b)")
	}
	c := Constraint{Key: key, Op: op, Expr: s}
	if op == "in" || op == "not in" {
		inner, ok := strings.CutPrefix(rest, "(")
		if inner, ok = strings.CutSuffix(inner, ")"); !ok {
			return bad("%s wants a list in parentheses, e.g. %s %s (a, b)", op, key, op)
		}
		for v := range strings.SplitSeq(inner, ",") {
			v = strings.TrimSpace(v)
			if err := checkValue(v); err != nil {
				return bad("%v", err)
			}
			c.Values = append(c.Values, normaliseValue(key, v))
		}
		return c, nil
	}
	if err := checkValue(rest); err != nil {
		return bad("%v", err)
	}
	c.Values = []string{normaliseValue(key, rest)}
	if strings.ContainsAny(op, "<>") {
		if _, err := version.NewVersion(c.Values[0]); err != nil {
			return bad("%s compares versions, and %q is not one", op, c.Values[0])
		}
	}
	return c, nil
}

// checkValue rejects empty values and values with spaces or list syntax.
func checkValue(v string) error {
	switch {
	case v == "":
		return errors.New("missing value")
	case strings.ContainsAny(v, " \t\n(),\"'"):
		return fmt.Errorf("value %q: want one word (a version, a name)", v)
	}
	return nil
}

// normaliseValue reads a bare cgroup version 2 as v2.
func normaliseValue(key, v string) string {
	if key == "cgroup" && (v == "1" || v == "2") {
		return "v" + v
	}
	return v
}

// String is the expression as written.
func (c Constraint) String() string { return c.Expr }

// Match reports whether a cell with axis value got satisfies c; when not,
// why says so in words ("docker 20.10.5 is not >= 20.10.24").
func (c Constraint) Match(got string) (ok bool, why string) {
	shown := got
	if shown == "" {
		shown = "unknown"
	}
	no := func() (bool, string) {
		if len(c.Values) > 1 || c.Op == "in" || c.Op == "not in" {
			return false, fmt.Sprintf("%s %s is not %s (%s)", c.Key, shown, c.Op, strings.Join(c.Values, ", "))
		}
		return false, fmt.Sprintf("%s %s is not %s %s", c.Key, shown, c.Op, c.Values[0])
	}
	switch c.Op {
	case "==", "in":
		if slices.ContainsFunc(c.Values, func(v string) bool { return sameValue(got, v) }) {
			return true, ""
		}
		return no()
	case "!=", "not in":
		if slices.ContainsFunc(c.Values, func(v string) bool { return sameValue(got, v) }) {
			return no()
		}
		return true, ""
	}
	gv, err := version.NewVersion(got)
	if err != nil {
		return false, fmt.Sprintf("%s %s is not a version to compare with %s %s", c.Key, shown, c.Op, c.Values[0])
	}
	want := version.Must(version.NewVersion(c.Values[0]))
	cmp := gv.Compare(want)
	if ok := map[string]bool{">=": cmp >= 0, "<=": cmp <= 0, ">": cmp > 0, "<": cmp < 0}[c.Op]; ok {
		return true, ""
	}
	return no()
}

// sameValue compares two axis values: as versions when both are, else as text.
func sameValue(a, b string) bool {
	if a == b {
		return true
	}
	va, errA := version.NewVersion(a)
	vb, errB := version.NewVersion(b)
	return errA == nil && errB == nil && va.Equal(vb)
}
