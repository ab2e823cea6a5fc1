package matrix

import (
	"fmt"
	"strings"
)

// SpecError is one problem in a matrix spec. Load and Validate return every
// problem they find, joined with errors.Join; use errors.As to get the first
// *SpecError, or walk the join with Unwrap() []error to get all of them.
// Callers map it to a usage exit code.
type SpecError struct {
	File   string // spec path as given to Load ("" for a spec built in code)
	Line   int    // 1-based; 0 when the position is unknown
	Column int    // 1-based; 0 when the position is unknown
	Key    string // offending key as a path, e.g. "axes.kernel[1].version"
	Msg    string
}

func (e *SpecError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FilterError says a filter (a --kernel, --distro, --docker, --driver or
// --cell value, or --shard) is malformed or selects nothing. Existing lists
// the values the plan has for that axis, so the user can pick one.
type FilterError struct {
	Flag     string   // "kernel", "distro", "docker", "driver", "cell", "shard" or "" for a combination
	Values   []string // the values given
	Msg      string
	Existing []string
}

func (e *FilterError) Error() string {
	var b strings.Builder
	if e.Flag != "" {
		fmt.Fprintf(&b, "--%s %s: ", e.Flag, strings.Join(e.Values, ","))
	}
	b.WriteString(e.Msg)
	if len(e.Existing) > 0 {
		what := e.Flag + "s"
		if e.Flag == "" {
			what = "values"
		}
		fmt.Fprintf(&b, "; %s in the plan: %s", what, strings.Join(e.Existing, ", "))
	}
	return b.String()
}
