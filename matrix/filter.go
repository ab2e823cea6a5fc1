package matrix

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Filter selects cells of a plan, as the --kernel, --distro, --docker,
// --driver and --cell flags of plan and run do. Values within one field are
// alternatives (OR); fields combine with AND; an empty field selects all.
//
//   - Kernel and Docker values are a bare version, meaning that release line
//     ("3.16" selects 3.16, 3.16.0 and 3.16.x; "6" selects every 6.x), or a
//     go-version constraint (">= 5.10, < 6.2"; commas inside one constraint
//     mean AND).
//   - Distro values are names (debian12) or suites (bookworm).
//   - Driver values are storage drivers.
//   - Cell values are cell IDs or shell patterns (k6.1-*).
//   - Init and Cgroup values are the host settings (systemd, agent; distro,
//     v1, v2), matched with the defaults applied: --init systemd selects
//     the cells that name no init too.
type Filter struct {
	Kernel, Distro, Docker, Driver, Cell []string
	Init, Cgroup                         []string
}

// SplitFlagValues turns repeated flag values into filter values: each value
// is split at commas, except a kernel or docker constraint (a value holding
// an operator such as >= or <), whose commas mean AND.
func SplitFlagValues(values []string) []string {
	var out []string
	for _, v := range values {
		if strings.ContainsAny(v, "<>=!~") {
			out = append(out, strings.TrimSpace(v))
			continue
		}
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// Empty reports whether the filter selects every cell.
func (f Filter) Empty() bool {
	return len(f.Kernel)+len(f.Distro)+len(f.Docker)+len(f.Driver)+len(f.Cell)+len(f.Init)+len(f.Cgroup) == 0
}

// filterAxis is one field of a Filter, compiled.
type filterAxis struct {
	flag     string
	values   []string
	match    func(Cell) bool
	existing func([]Cell) []string
}

// Apply returns the cells the filter selects, in plan order. A malformed
// value, or a field that selects nothing, is a *FilterError listing the
// values the plan has for that axis; so is an empty combination of fields.
func (f Filter) Apply(cells []Cell) ([]Cell, error) {
	axes, err := f.compile()
	if err != nil {
		return nil, err
	}
	for _, a := range axes {
		if !slices.ContainsFunc(cells, a.match) {
			return nil, &FilterError{Flag: a.flag, Values: a.values, Msg: "selects no cell", Existing: a.existing(cells)}
		}
	}
	var out []Cell
	for _, c := range cells {
		if !slices.ContainsFunc(axes, func(a filterAxis) bool { return !a.match(c) }) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		var given []string
		for _, a := range axes {
			given = append(given, fmt.Sprintf("--%s %s", a.flag, strings.Join(a.values, ",")))
		}
		return nil, &FilterError{Msg: fmt.Sprintf("no cell matches %s together (each matches some cells on its own)", strings.Join(given, " "))}
	}
	return out, nil
}

func (f Filter) compile() ([]filterAxis, error) {
	var axes []filterAxis
	if len(f.Kernel) > 0 {
		m, err := versionMatchers(AxisKernel, f.Kernel)
		if err != nil {
			return nil, err
		}
		axes = append(axes, filterAxis{AxisKernel, f.Kernel,
			func(c Cell) bool { return anyMatch(m, c.Kernel.Version) },
			func(cs []Cell) []string { return distinct(cs, func(c Cell) string { return c.Kernel.Version }) }})
	}
	if len(f.Distro) > 0 {
		axes = append(axes, filterAxis{AxisDistro, f.Distro,
			func(c Cell) bool {
				return slices.Contains(f.Distro, c.Distro.Name) || slices.Contains(f.Distro, c.Distro.Suite)
			},
			func(cs []Cell) []string { return distinct(cs, func(c Cell) string { return c.Distro.Name }) }})
	}
	if len(f.Docker) > 0 {
		m, err := versionMatchers(AxisDocker, f.Docker)
		if err != nil {
			return nil, err
		}
		axes = append(axes, filterAxis{AxisDocker, f.Docker,
			func(c Cell) bool { return anyMatch(m, c.Docker.Version) },
			func(cs []Cell) []string { return distinct(cs, func(c Cell) string { return c.Docker.Version }) }})
	}
	if len(f.Driver) > 0 {
		axes = append(axes, filterAxis{AxisDriver, f.Driver,
			func(c Cell) bool { return slices.Contains(f.Driver, c.Driver) },
			func(cs []Cell) []string { return distinct(cs, func(c Cell) string { return c.Driver }) }})
	}
	for _, setting := range []struct {
		flag   string
		values []string
		known  []string
		of     func(Cell) string
	}{
		{"init", f.Init, Inits(), func(c Cell) string { return cmp.Or(c.Settings.Init, DefaultInit) }},
		{"cgroup", f.Cgroup, Cgroups(), func(c Cell) string { return cmp.Or(c.Settings.Cgroup, CgroupDistro) }},
	} {
		if len(setting.values) == 0 {
			continue
		}
		for _, v := range setting.values {
			if !slices.Contains(setting.known, v) {
				return nil, &FilterError{Flag: setting.flag, Values: []string{v}, Msg: "want one of " + strings.Join(setting.known, ", ")}
			}
		}
		axes = append(axes, filterAxis{setting.flag, setting.values,
			func(c Cell) bool { return slices.Contains(setting.values, setting.of(c)) },
			func(cs []Cell) []string { return distinct(cs, setting.of) }})
	}
	if len(f.Cell) > 0 {
		for _, p := range f.Cell {
			if _, err := path.Match(p, ""); err != nil {
				return nil, &FilterError{Flag: "cell", Values: []string{p}, Msg: "bad pattern: " + err.Error()}
			}
		}
		axes = append(axes, filterAxis{"cell", f.Cell,
			func(c Cell) bool {
				return slices.ContainsFunc(f.Cell, func(p string) bool { ok, _ := path.Match(p, c.ID); return ok })
			},
			func(cs []Cell) []string { return distinct(cs, func(c Cell) string { return c.ID }) }})
	}
	return axes, nil
}

// versionMatcher matches a version string.
type versionMatcher func(v string) bool

// versionMatchers compiles kernel or docker filter values.
func versionMatchers(flag string, values []string) ([]versionMatcher, error) {
	var out []versionMatcher
	for _, v := range values {
		if line, ok := releaseLine(v); ok {
			out = append(out, func(s string) bool { return inLine(line, s) })
			continue
		}
		c, err := version.NewConstraint(v)
		if err != nil {
			return nil, &FilterError{Flag: flag, Values: []string{v},
				Msg: "want a version (3.16 selects the 3.16 line) or a constraint such as \">= 5.10, < 6.2\""}
		}
		out = append(out, func(s string) bool {
			cv := coreVersion(s)
			return cv != nil && c.Check(cv)
		})
	}
	return out, nil
}

// releaseLine parses a bare version "3.16" into its numeric segments.
func releaseLine(v string) ([]int, bool) {
	parts := strings.Split(v, ".")
	if len(parts) > 4 {
		return nil, false
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || (p[0] == '+' || p[0] == '-') {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// inLine reports whether version s belongs to release line: line's segments
// are a prefix of s's ("6.1" is in line 6 and 6.1, not 6.12); missing
// segments of s count as 0 ("6.1" is in line 6.1.0).
func inLine(line []int, s string) bool {
	cv := coreVersion(s)
	if cv == nil {
		return false
	}
	seg := cv.Segments()
	for i, want := range line {
		got := 0
		if i < len(seg) {
			got = seg[i]
		}
		if got != want {
			return false
		}
	}
	return true
}

func anyMatch(ms []versionMatcher, s string) bool {
	return slices.ContainsFunc(ms, func(m versionMatcher) bool { return m(s) })
}

// distinct returns the distinct non-empty values of key over cells, in plan order.
func distinct(cells []Cell, key func(Cell) string) []string {
	var out []string
	for _, c := range cells {
		if v := key(c); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
