package matrix

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	version "github.com/hashicorp/go-version"
)

// The spec is parsed with goccy/go-yaml's parser and decoded by walking its
// AST against the schema below, rather than by reflection, for three reasons:
// every value keeps its position (so every error names file:line:column and
// the key), all problems are collected instead of the first, and scalars keep
// the text the user wrote (an unquoted kernel 6.10 stays "6.10", not 6.1).
// Unknown keys, duplicate keys and merge keys are rejected.

// decoder walks one spec document.
type decoder struct {
	file    string
	anchors map[string]ast.Node
	pos     map[string]position
	errs    []error
}

// handler decodes the value of one known key.
type handler func(key string, value ast.Node)

func decode(name string, data []byte) (*Spec, []error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, []error{yamlError(name, err)}
	}
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		return nil, []error{&SpecError{File: name, Msg: "empty spec: want apiVersion: " + APIVersion + ", kind: " + Kind + " and axes"}}
	}
	d := &decoder{file: name, anchors: map[string]ast.Node{}, pos: map[string]position{}}
	if len(docs) > 1 {
		d.errorf("", docs[1].Body, "a spec is one YAML document; found %d", len(docs))
	}
	ast.Walk(anchorCollector(d.anchors), docs[0].Body)
	s := &Spec{File: name, Defaults: DefaultSettings(), pos: d.pos}
	d.pos[""] = nodePos(docs[0].Body) // where missing top-level keys are reported
	d.top(s, docs[0].Body)
	return s, d.errs
}

// yamlError turns a goccy/go-yaml error into a *SpecError with its position.
func yamlError(name string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		e := &SpecError{File: name, Msg: "yaml: " + ye.GetMessage()}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
		return e
	}
	return &SpecError{File: name, Msg: fmt.Sprintf("yaml: %v", err)}
}

type anchorCollector map[string]ast.Node

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil && an.Name.GetToken() != nil {
		a[an.Name.GetToken().Value] = an.Value
	}
	return a
}

func joinKey(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func indexKey(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

func nodePos(n ast.Node) position {
	switch v := n.(type) {
	case nil:
		return position{}
	case *ast.MappingNode:
		if len(v.Values) > 0 && v.Values[0] != nil {
			return nodePos(v.Values[0])
		}
	case *ast.MappingValueNode:
		if v.Key != nil {
			return nodePos(v.Key)
		}
	case *ast.AnchorNode:
		return nodePos(v.Value)
	case *ast.TagNode:
		return nodePos(v.Value)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

// errorf records a problem at key, positioned at n (or at key's recorded position).
func (d *decoder) errorf(key string, n ast.Node, format string, args ...any) {
	p := nodePos(n)
	if p.line == 0 {
		p = d.pos[key]
	}
	d.errs = append(d.errs, &SpecError{File: d.file, Line: p.line, Column: p.column, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows anchors, tags and aliases to the node that holds the value.
func (d *decoder) resolve(key string, n ast.Node) ast.Node {
	for range 64 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.DocumentNode:
			n = v.Body
		case *ast.MappingKeyNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil && v.Value.GetToken() != nil {
				name = v.Value.GetToken().Value
			}
			target, ok := d.anchors[name]
			if !ok {
				d.errorf(key, v, "alias *%s names no anchor", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	d.errorf(key, n, "aliases nest too deep")
	return nil
}

// kind names a node's type for messages.
func kind(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	default:
		return "a string"
	}
}

type keyValue struct {
	key   string
	node  ast.Node // the key
	value ast.Node
}

// mapping returns the entries of a mapping; null is an empty mapping.
func (d *decoder) mapping(key string, n ast.Node) ([]keyValue, bool) {
	var values []*ast.MappingValueNode
	switch m := d.resolve(key, n).(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	case nil, *ast.NullNode:
		return nil, true
	default:
		d.errorf(key, n, "want a mapping, got %s", kind(m))
		return nil, false
	}
	seen := map[string]bool{}
	var out []keyValue
	for _, mv := range values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if mv.Key.IsMergeKey() {
			d.errorf(key, mv.Key, "merge keys (<<) are not supported; repeat the keys or use an alias for the whole value")
			continue
		}
		kn := d.resolve(key, mv.Key)
		name, ok := scalarText(kn)
		if !ok {
			d.errorf(key, mv.Key, "a key must be a string, got %s", kind(kn))
			continue
		}
		child := joinKey(key, name)
		if seen[name] {
			d.errorf(child, mv.Key, "duplicate key %q", name)
			continue
		}
		seen[name] = true
		if _, ok := d.pos[child]; !ok {
			d.pos[child] = nodePos(mv.Key)
		}
		out = append(out, keyValue{key: name, node: mv.Key, value: mv.Value})
	}
	return out, true
}

// fields decodes a mapping whose keys must all be in handlers.
func (d *decoder) fields(key string, n ast.Node, handlers map[string]handler) bool {
	entries, ok := d.mapping(key, n)
	for _, e := range entries {
		h, known := handlers[e.key]
		if !known {
			allowed := make([]string, 0, len(handlers))
			for k := range handlers {
				allowed = append(allowed, k)
			}
			slices.Sort(allowed)
			d.errorf(joinKey(key, e.key), e.node, "unknown field %q (allowed: %s)", e.key, strings.Join(allowed, ", "))
			ok = false
			continue
		}
		h(joinKey(key, e.key), e.value)
	}
	return ok
}

// seq returns the items of a list; null is an empty list.
func (d *decoder) seq(key string, n ast.Node) ([]ast.Node, bool) {
	switch s := d.resolve(key, n).(type) {
	case *ast.SequenceNode:
		for i, v := range s.Values {
			if _, ok := d.pos[indexKey(key, i)]; !ok {
				d.pos[indexKey(key, i)] = nodePos(v)
			}
		}
		return s.Values, true
	case nil, *ast.NullNode:
		return nil, true
	default:
		d.errorf(key, n, "want a list, got %s", kind(s))
		return nil, false
	}
}

// scalarText is the text of a scalar as written (numbers keep their digits).
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		tk := n.GetToken()
		if tk == nil {
			return "", false
		}
		return tk.Value, true
	default:
		return "", false
	}
}

// text decodes a non-empty scalar.
func (d *decoder) text(key string, n ast.Node) (string, bool) {
	r := d.resolve(key, n)
	s, ok := scalarText(r)
	if !ok {
		d.errorf(key, n, "want a string, got %s", kind(r))
		return "", false
	}
	s = strings.TrimSpace(s)
	if s == "" {
		d.errorf(key, n, "must not be empty")
		return "", false
	}
	return s, true
}

// texts decodes a list of scalars; one scalar is a list of one when single is set.
func (d *decoder) texts(key string, n ast.Node, single bool) ([]string, bool) {
	if single {
		if _, ok := scalarText(d.resolve(key, n)); ok {
			s, ok := d.text(key, n)
			return []string{s}, ok
		}
	}
	items, ok := d.seq(key, n)
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, good := d.text(indexKey(key, i), it)
		if good {
			out = append(out, s)
		}
		ok = ok && good
	}
	return out, ok
}

func (d *decoder) boolean(key string, n ast.Node) (bool, bool) {
	r := d.resolve(key, n)
	b, ok := r.(*ast.BoolNode)
	if !ok {
		d.errorf(key, n, "want true or false, got %s", kind(r))
		return false, false
	}
	return b.Value, true
}

func (d *decoder) integer(key string, n ast.Node, lo, hi int) (int, bool) {
	r := d.resolve(key, n)
	in, ok := r.(*ast.IntegerNode)
	if !ok {
		d.errorf(key, n, "want a whole number, got %s", kind(r))
		return 0, false
	}
	var v int64
	switch x := in.Value.(type) {
	case int64:
		v = x
	case uint64:
		v = int64(min(x, uint64(1<<62)))
	case int:
		v = int64(x)
	}
	if v < int64(lo) || v > int64(hi) {
		d.errorf(key, n, "%d is out of range %d..%d", v, lo, hi)
		return 0, false
	}
	return int(v), true
}

func (d *decoder) duration(key string, n ast.Node) (time.Duration, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		d.errorf(key, n, "%q is not a positive duration like 30s, 15m or 1h30m", s)
		return 0, false
	}
	return v, true
}

var memoryRE = regexp.MustCompile(`^([0-9]+)\s*(MiB|GiB)?$`)

// memory decodes MiB as a number or "512MiB"/"2GiB".
func (d *decoder) memory(key string, n ast.Node) (int, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return 0, false
	}
	m := memoryRE.FindStringSubmatch(s)
	v, err := strconv.Atoi(safeIndex(m, 1))
	if m == nil || err != nil {
		d.errorf(key, n, "%q is not a memory size: want MiB as a number (2048) or a size like 512MiB or 2GiB", s)
		return 0, false
	}
	if m[2] == "GiB" {
		if v > MaxMemMiB/1024 {
			v = MaxMemMiB + 1
		} else {
			v *= 1024
		}
	}
	if v < MinMemMiB || v > MaxMemMiB {
		d.errorf(key, n, "%s is out of range %dMiB..%dMiB", s, MinMemMiB, MaxMemMiB)
		return 0, false
	}
	return v, true
}

func safeIndex(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

// oneOf decodes a scalar that must be in allowed.
func (d *decoder) oneOf(key string, n ast.Node, what string, allowed []string) (string, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.errorf(key, n, "unknown %s %q (known: %s)", what, s, strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// setOf decodes a duplicate-free list whose items must be in allowed.
func (d *decoder) setOf(key string, n ast.Node, what string, allowed []string) ([]string, bool) {
	items, ok := d.seq(key, n)
	out := []string{}
	for i, it := range items {
		s, good := d.oneOf(indexKey(key, i), it, what, allowed)
		switch {
		case !good:
			ok = false
		case slices.Contains(out, s):
			d.errorf(indexKey(key, i), it, "duplicate %s %q", what, s)
			ok = false
		default:
			out = append(out, s)
		}
	}
	return out, ok
}

// parseVersion accepts versions like 6.1, 3.16.0, 20.10.24 or 6.1.0-13.
var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+){0,3}(-[0-9A-Za-z.]+)?$`)

func parseVersion(s string) (*version.Version, error) {
	if !versionRE.MatchString(s) {
		return nil, fmt.Errorf("%q is not a version like 6.1, 3.16.0 or 20.10.24", s)
	}
	v, err := version.NewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a version: %w", s, err)
	}
	return v, nil
}

func (d *decoder) version(key string, n ast.Node) (string, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return "", false
	}
	if _, err := parseVersion(s); err != nil {
		d.errorf(key, n, "%v", err)
		return "", false
	}
	return s, true
}

func (d *decoder) constraint(key string, n ast.Node) (string, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return "", false
	}
	if _, err := version.NewConstraint(s); err != nil {
		d.errorf(key, n, "%q is not a version constraint like \">= 4.0\" or \">= 5.10, < 6.2\": %v", s, err)
		return "", false
	}
	return s, true
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// name decodes a value used in cell IDs and file names.
func (d *decoder) name(key string, n ast.Node) (string, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return "", false
	}
	if !nameRE.MatchString(s) {
		d.errorf(key, n, "%q is not a usable name: letters, digits, '.', '_' and '-' only, at most 64", s)
		return "", false
	}
	return s, true
}

var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,127}$`)

func (d *decoder) pkg(key string, n ast.Node) (string, bool) {
	s, ok := d.text(key, n)
	if ok && !packageRE.MatchString(s) {
		d.errorf(key, n, "%q is not a Debian package name (lower-case letters, digits, '+', '-' and '.', starting with a letter or digit, at least two characters)", s)
		return "", false
	}
	return s, ok
}

// suite decodes a Debian suite: a known code name, optionally with a
// -backports, -updates or -security suffix.
func (d *decoder) suite(key string, n ast.Node) (string, bool) {
	s, ok := d.text(key, n)
	if !ok {
		return "", false
	}
	if !knownSuite(s) {
		d.errorf(key, n, "unknown Debian suite %q (known: %s; optionally with -backports, -updates or -security)", s, strings.Join(debianSuites(), ", "))
		return "", false
	}
	return s, true
}

func knownSuite(s string) bool {
	base := s
	for _, suffix := range []string{"-backports", "-updates", "-security"} {
		base = strings.TrimSuffix(base, suffix)
	}
	return slices.Contains(debianSuites(), base)
}

// baseSuite strips -backports, -updates and -security.
func baseSuite(s string) string {
	for _, suffix := range []string{"-backports", "-updates", "-security"} {
		s = strings.TrimSuffix(s, suffix)
	}
	return s
}

// --- schema ---

func (d *decoder) top(s *Spec, n ast.Node) {
	var patch SettingsPatch
	h := map[string]handler{
		"apiVersion": func(k string, v ast.Node) { s.APIVersion, _ = d.text(k, v) },
		"kind":       func(k string, v ast.Node) { s.Kind, _ = d.text(k, v) },
		"axes":       func(k string, v ast.Node) { d.axes(k, v, &s.Axes) },
		"include":    func(k string, v ast.Node) { s.Include = d.entries(k, v, true) },
		"exclude":    func(k string, v ast.Node) { s.Exclude = d.entries(k, v, false) },
		"rules":      func(k string, v ast.Node) { s.Rules = d.rules(k, v) },
	}
	d.settingsHandlers(h, &patch)
	r := d.resolve("", n)
	if _, isMap := r.(*ast.MappingNode); !isMap {
		if _, isMV := r.(*ast.MappingValueNode); !isMV {
			d.errorf("", n, "a spec is a mapping with apiVersion, kind and axes; got %s", kind(r))
			return
		}
	}
	d.fields("", n, h)
	patch.Apply(&s.Defaults)
}

// settingsHandlers adds the per-cell settings keys to h, decoding into p.
func (d *decoder) settingsHandlers(h map[string]handler, p *SettingsPatch) {
	h["probes"] = func(k string, v ast.Node) {
		if ps, ok := d.setOf(k, v, "probe", Probes()); ok {
			if len(ps) == 0 {
				d.errorf(k, v, "select at least one probe (%s)", strings.Join(Probes(), ", "))
				return
			}
			p.Probes = &ps
		}
	}
	h["soak"] = func(k string, v ast.Node) {
		if x, ok := d.duration(k, v); ok {
			p.Soak = &x
		}
	}
	h["timeout"] = func(k string, v ast.Node) {
		if x, ok := d.duration(k, v); ok {
			p.Timeout = &x
		}
	}
	h["repeats"] = func(k string, v ast.Node) {
		if x, ok := d.integer(k, v, 1, MaxRepeats); ok {
			p.Repeats = &x
		}
	}
	h["vm"] = func(k string, v ast.Node) {
		d.fields(k, v, map[string]handler{
			"cpus": func(k string, v ast.Node) {
				if x, ok := d.integer(k, v, 1, MaxCPUs); ok {
					p.CPUs = &x
				}
			},
			"memory": func(k string, v ast.Node) {
				if x, ok := d.memory(k, v); ok {
					p.MemoryMB = &x
				}
			},
		})
	}
	h["scratch_fs"] = func(k string, v ast.Node) {
		if x, ok := d.oneOf(k, v, "scratch filesystem", ScratchFilesystems()); ok {
			p.ScratchFS = &x
		}
	}
	h["crash_check"] = func(k string, v ast.Node) {
		if x, ok := d.boolean(k, v); ok {
			p.CrashCheck = &x
		}
	}
	h["faults"] = func(k string, v ast.Node) {
		if x, probs, ok := d.faults(k, v); ok {
			p.Faults, p.FaultProbability = &x, &probs
		}
	}
	h["init"] = func(k string, v ast.Node) {
		if x, ok := d.oneOf(k, v, "init", Inits()); ok {
			p.Init = &x
		}
	}
	h["cgroup"] = func(k string, v ast.Node) {
		if x, ok := d.oneOf(k, v, "cgroup layout", Cgroups()); ok {
			p.Cgroup = &x
		}
	}
	h["packages"] = func(k string, v ast.Node) {
		if x, ok := d.packages(k, v); ok {
			p.Packages = &x
		}
	}
}

// faults decodes a list of faults, each a name or {name, probability}
// with 0 < probability < 1 (a probabilistic fault, see
// Settings.FaultProbability); no fault twice.
func (d *decoder) faults(key string, n ast.Node) ([]string, map[string]float64, bool) {
	items, ok := d.seq(key, n)
	out := []string{}
	probs := map[string]float64{}
	for i, it := range items {
		ik := indexKey(key, i)
		var name string
		var good bool
		switch d.resolve(ik, it).(type) {
		case *ast.MappingNode, *ast.MappingValueNode:
			prob := 0.0
			hasProb := false
			good = d.fields(ik, it, map[string]handler{
				"name": func(k string, v ast.Node) { name, _ = d.oneOf(k, v, "fault", Faults()) },
				"probability": func(k string, v ast.Node) {
					prob, hasProb = d.probability(k, v)
				},
			})
			switch {
			case name == "":
				d.errorf(ik, it, "a fault with a probability needs a name (one of %s)", strings.Join(Faults(), ", "))
				good = false
			case !hasProb:
				d.errorf(ik, it, "fault %q as a mapping needs a probability (0 < p < 1); for always, list it by name", name)
				good = false
			case good:
				probs[name] = prob
			}
		default:
			name, good = d.oneOf(ik, it, "fault", Faults())
		}
		switch {
		case !good:
			ok = false
		case slices.Contains(out, name):
			d.errorf(ik, it, "duplicate fault %q", name)
			ok = false
		default:
			out = append(out, name)
		}
	}
	return out, probs, ok
}

// probability decodes a number strictly between 0 and 1.
func (d *decoder) probability(key string, n ast.Node) (float64, bool) {
	var p float64
	switch v := d.resolve(key, n).(type) {
	case *ast.FloatNode:
		p = v.Value
	case *ast.IntegerNode:
		d.errorf(key, n, "want a probability between 0 and 1 (exclusive), e.g. 0.3; for always, list the fault by name")
		return 0, false
	default:
		d.errorf(key, n, "want a probability between 0 and 1, got %s", kind(v))
		return 0, false
	}
	if !(p > 0 && p < 1) {
		d.errorf(key, n, "probability %v is not between 0 and 1 (exclusive); for always, list the fault by name", p)
		return 0, false
	}
	return p, true
}

// packages decodes {add: [...], remove: [...]}: Debian package names, no
// name twice, none both added and removed.
func (d *decoder) packages(key string, n ast.Node) (PackageChanges, bool) {
	var pc PackageChanges
	list := func(k string, v ast.Node) ([]string, bool) {
		items, ok := d.seq(k, v)
		var out []string
		for i, it := range items {
			s, good := d.pkg(indexKey(k, i), it)
			switch {
			case !good:
				ok = false
			case slices.Contains(out, s):
				d.errorf(indexKey(k, i), it, "duplicate package %q", s)
				ok = false
			default:
				out = append(out, s)
			}
		}
		return out, ok
	}
	ok := true
	var removeNode ast.Node
	fok := d.fields(key, n, map[string]handler{
		"add": func(k string, v ast.Node) {
			var good bool
			pc.Add, good = list(k, v)
			ok = ok && good
		},
		"remove": func(k string, v ast.Node) {
			var good bool
			pc.Remove, good = list(k, v)
			ok, removeNode = ok && good, v
		},
	})
	if !ok || !fok {
		return pc, false
	}
	for _, r := range pc.Remove {
		if slices.Contains(pc.Add, r) {
			d.errorf(joinKey(key, "remove"), removeNode, "package %q is both added and removed", r)
			return pc, false
		}
	}
	if pc.Empty() {
		d.errorf(key, n, "packages needs add or remove (a list of Debian package names)")
		return pc, false
	}
	return pc, true
}

func (d *decoder) axes(key string, n ast.Node, a *Axes) {
	d.fields(key, n, map[string]handler{
		AxisKernel: func(k string, v ast.Node) {
			items, _ := d.seq(k, v)
			for i, it := range items {
				if kr, ok := d.kernel(indexKey(k, i), it); ok {
					a.Kernel = append(a.Kernel, kr)
				}
			}
		},
		AxisDistro: func(k string, v ast.Node) {
			items, _ := d.seq(k, v)
			for i, it := range items {
				if dr, ok := d.distro(indexKey(k, i), it); ok {
					a.Distro = append(a.Distro, dr)
				}
			}
		},
		AxisDocker: func(k string, v ast.Node) {
			items, _ := d.seq(k, v)
			for i, it := range items {
				if dv, ok := d.docker(indexKey(k, i), it); ok {
					a.Docker = append(a.Docker, dv)
				}
			}
		},
		AxisDriver: func(k string, v ast.Node) {
			items, _ := d.seq(k, v)
			for i, it := range items {
				if dr, ok := d.oneOf(indexKey(k, i), it, "storage driver", Drivers()); ok {
					a.Driver = append(a.Driver, dr)
				}
			}
		},
	})
}

func (d *decoder) kernel(key string, n ast.Node) (KernelRef, bool) {
	var k KernelRef
	var sources []string
	ok := d.fields(key, n, map[string]handler{
		"version": func(kk string, v ast.Node) { k.Version, _ = d.version(kk, v) },
		"debian": func(kk string, v ast.Node) {
			sources = append(sources, "debian")
			d.fields(kk, v, map[string]handler{
				"suite":   func(kk string, v ast.Node) { k.Suite, _ = d.suite(kk, v) },
				"package": func(kk string, v ast.Node) { k.Package, _ = d.pkg(kk, v) },
			})
			if _, has := d.pos[joinKey(kk, "suite")]; !has {
				d.errorf(kk, v, "a debian kernel needs suite (e.g. bookworm)")
			}
		},
		"local": func(kk string, v ast.Node) {
			sources = append(sources, "local")
			d.fields(kk, v, map[string]handler{
				"vmlinuz": func(kk string, v ast.Node) { k.Vmlinuz, _ = d.text(kk, v) },
				"modules": func(kk string, v ast.Node) { k.Modules, _ = d.text(kk, v) },
			})
			if _, has := d.pos[joinKey(kk, "vmlinuz")]; !has {
				d.errorf(kk, v, "a local kernel needs vmlinuz (path to the kernel image)")
			}
		},
		"box": func(kk string, v ast.Node) {
			sources = append(sources, "box")
			k.Box, _ = d.text(kk, v)
		},
	})
	if !ok {
		return k, false
	}
	if _, has := d.pos[joinKey(key, "version")]; !has {
		d.errorf(key, n, "a kernel needs version (e.g. \"6.1\")")
		return k, false
	}
	if len(sources) != 1 {
		d.errorf(key, n, "a kernel needs exactly one source: debian: {suite: ...}, local: {vmlinuz: ..., modules: ...} or box: NAME")
		return k, false
	}
	return k, k.Version != ""
}

func (d *decoder) distro(key string, n ast.Node) (DistroRef, bool) {
	if _, scalar := scalarText(d.resolve(key, n)); scalar {
		name, ok := d.text(key, n)
		if !ok {
			return DistroRef{}, false
		}
		r, known := releaseByName(name)
		if !known {
			d.errorf(key, n, "unknown distro %q (built in: %s); give {name: ..., suite: ...} for others", name, knownDistros())
			return DistroRef{}, false
		}
		return DistroRef{Name: r.Name, Suite: r.Suite, DockerIO: r.Docker}, true
	}
	var dr DistroRef
	ok := d.fields(key, n, map[string]handler{
		"name":   func(k string, v ast.Node) { dr.Name, _ = d.name(k, v) },
		"suite":  func(k string, v ast.Node) { dr.Suite, _ = d.suite(k, v) },
		"docker": func(k string, v ast.Node) { dr.DockerIO, _ = d.version(k, v) },
	})
	if !ok {
		return dr, false
	}
	if dr.Name == "" {
		d.errorf(key, n, "a distro needs name")
		return dr, false
	}
	if r, known := releaseByName(dr.Name); known {
		if dr.Suite != "" && dr.Suite != r.Suite {
			d.errorf(joinKey(key, "suite"), n, "distro %s is suite %s, not %s", r.Name, r.Suite, dr.Suite)
			return dr, false
		}
		dr.Suite = r.Suite
		if dr.DockerIO == "" {
			dr.DockerIO = r.Docker
		}
	}
	if dr.Suite == "" {
		d.errorf(key, n, "distro %s needs suite (a Debian suite such as bookworm)", dr.Name)
		return dr, false
	}
	if dr.DockerIO == "" {
		if r, known := releaseBySuite(baseSuite(dr.Suite)); known {
			dr.DockerIO = r.Docker
		}
	}
	return dr, true
}

func knownDistros() string {
	var out []string
	for _, r := range debianReleases() {
		out = append(out, fmt.Sprintf("%s (%s)", r.Name, r.Suite))
	}
	return strings.Join(out, ", ")
}

func (d *decoder) docker(key string, n ast.Node) (DockerValue, bool) {
	if _, scalar := scalarText(d.resolve(key, n)); scalar {
		s, ok := d.text(key, n)
		if !ok {
			return DockerValue{}, false
		}
		if s == DockerFromDistro {
			return DockerValue{Version: s}, true
		}
		if _, err := parseVersion(s); err != nil {
			d.errorf(key, n, "%v; or use %q for the distro's own docker.io", err, DockerFromDistro)
			return DockerValue{}, false
		}
		return DockerValue{Version: s}, true
	}
	var dv DockerValue
	ok := d.fields(key, n, map[string]handler{
		"version": func(k string, v ast.Node) { dv.Version, _ = d.version(k, v) },
		"suite":   func(k string, v ast.Node) { dv.Suite, _ = d.suite(k, v) },
		"package": func(k string, v ast.Node) { dv.Package, _ = d.pkg(k, v) },
	})
	if ok && dv.Version == "" {
		d.errorf(key, n, "a docker entry needs version")
		return dv, false
	}
	return dv, ok
}

// entries decodes include (withSettings) or exclude entries.
func (d *decoder) entries(key string, n ast.Node, withSettings bool) []Entry {
	items, _ := d.seq(key, n)
	var out []Entry
	for i, it := range items {
		k := indexKey(key, i)
		e := Entry{key: k}
		h := map[string]handler{
			AxisKernel: func(kk string, v ast.Node) { e.Kernel, _ = d.version(kk, v) },
			AxisDistro: func(kk string, v ast.Node) { e.Distro, _ = d.name(kk, v) },
			AxisDocker: func(kk string, v ast.Node) {
				s, ok := d.text(kk, v)
				if ok && s != DockerFromDistro {
					if _, err := parseVersion(s); err != nil {
						d.errorf(kk, v, "%v; or use %q", err, DockerFromDistro)
						return
					}
				}
				e.Docker = s
			},
			AxisDriver: func(kk string, v ast.Node) { e.Driver, _ = d.oneOf(kk, v, "storage driver", Drivers()) },
		}
		if withSettings {
			d.settingsHandlers(h, &e.Set)
		}
		errsBefore := len(d.errs)
		d.fields(k, it, h)
		if len(d.errs) > errsBefore {
			continue
		}
		if e.Kernel == "" && e.Distro == "" && e.Docker == "" && e.Driver == "" && e.Set.empty() {
			d.errorf(k, it, "empty entry")
			continue
		}
		out = append(out, e)
	}
	return out
}

func (d *decoder) rules(key string, n ast.Node) []Rule {
	items, _ := d.seq(key, n)
	var out []Rule
	for i, it := range items {
		k := indexKey(key, i)
		var r Rule
		errsBefore := len(d.errs)
		d.fields(k, it, map[string]handler{
			"driver": func(kk string, v ast.Node) {
				items, _ := d.texts(kk, v, true)
				for j, s := range items {
					if !slices.Contains(Drivers(), s) {
						d.errorf(indexKey(kk, j), v, "unknown storage driver %q (known: %s)", s, strings.Join(Drivers(), ", "))
					}
				}
				r.Drivers = items
			},
			"distro":     func(kk string, v ast.Node) { r.Distros, _ = d.texts(kk, v, true) },
			"scratch_fs": func(kk string, v ast.Node) { r.ScratchFS, _ = d.texts(kk, v, true) },
			"kernel":     func(kk string, v ast.Node) { r.Kernel, _ = d.constraint(kk, v) },
			"docker":     func(kk string, v ast.Node) { r.Docker, _ = d.constraint(kk, v) },
			"reason":     func(kk string, v ast.Node) { r.Reason, _ = d.text(kk, v) },
			"source":     func(kk string, v ast.Node) { r.Source, _ = d.text(kk, v) },
			"check": func(kk string, v ast.Node) {
				c := &KernelCheck{}
				d.fields(kk, v, map[string]handler{
					"any_config": func(kk string, v ast.Node) {
						c.AnyConfig, _ = d.texts(kk, v, true)
						for j, opt := range c.AnyConfig {
							if !strings.HasPrefix(opt, "CONFIG_") {
								d.errorf(indexKey(kk, j), v, "%q is not a kernel config option (CONFIG_...)", opt)
							}
						}
					},
					"module": func(kk string, v ast.Node) { c.Module, _ = d.name(kk, v) },
				})
				if len(c.AnyConfig) == 0 && c.Module == "" {
					d.errorf(kk, v, "a check needs any_config or module")
				}
				r.Check = c
			},
		})
		if len(d.errs) > errsBefore {
			continue
		}
		if r.Reason == "" {
			d.errorf(k, it, "a rule needs reason (shown for the cells it rules out)")
			continue
		}
		if len(r.Drivers) == 0 && len(r.Distros) == 0 && len(r.ScratchFS) == 0 && r.Kernel == "" && r.Docker == "" {
			d.errorf(k, it, "a rule needs at least one of driver, distro, scratch_fs, kernel, docker")
			continue
		}
		if r.Check != nil {
			r.Check.Reason = r.Reason
		}
		if r.Source == "" {
			r.Source = d.file + " " + k
		}
		out = append(out, r)
	}
	return out
}
