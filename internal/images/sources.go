package images

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Source is one apt repository entry from the host's configuration, in either
// the one-line format (sources.list, *.list) or deb822 (*.sources).
type Source struct {
	Types      []string // "deb", "deb-src"
	URIs       []string
	Suites     []string
	Components []string
	SignedBy   string
	// File and Line say where the entry was read (Line is the first line of a deb822 paragraph).
	File string
	Line int
}

// Mirrors are the Debian archive and security archive URIs used for every
// download. Security is empty when none is configured.
type Mirrors struct {
	Debian   string `json:"debian"`
	Security string `json:"security,omitempty"`
}

// SourcesError is a malformed apt sources entry.
type SourcesError struct {
	File string
	Line int
	Msg  string
}

func (e *SourcesError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseOneLine parses the one-line sources.list format:
//
//	deb [opt=value ...] uri suite [component ...]
func ParseOneLine(name string, data []byte) ([]Source, error) {
	var out []Source
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		typ, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(typ, '\t'); i >= 0 {
			typ, rest = line[:i], line[i+1:]
		}
		if typ != "deb" && typ != "deb-src" {
			errs = append(errs, &SourcesError{name, n, fmt.Sprintf("unknown type %q", typ)})
			continue
		}
		src := Source{Types: []string{typ}, File: name, Line: n}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				errs = append(errs, &SourcesError{name, n, "unclosed [ in options"})
				continue
			}
			for _, opt := range strings.Fields(rest[1:end]) {
				k, v, _ := strings.Cut(opt, "=")
				if strings.EqualFold(k, "signed-by") {
					src.SignedBy = v
				}
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			errs = append(errs, &SourcesError{name, n, "want: type uri suite [component ...]"})
			continue
		}
		src.URIs, src.Suites, src.Components = f[:1], f[1:2], f[2:]
		out = append(out, src)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &SourcesError{name, n + 1, err.Error()})
	}
	return out, errors.Join(errs...)
}

// ParseDeb822 parses the deb822 *.sources format: paragraphs of "Field: value"
// lines (continuation lines start with a space) separated by blank lines.
// Paragraphs with "Enabled: no" are skipped.
func ParseDeb822(name string, data []byte) ([]Source, error) {
	paras, err := parseParagraphs(name, data)
	var out []Source
	errs := []error{err}
	for _, p := range paras {
		if strings.EqualFold(p.fields["enabled"], "no") {
			continue
		}
		src := Source{
			Types:      strings.Fields(p.fields["types"]),
			URIs:       strings.Fields(p.fields["uris"]),
			Suites:     strings.Fields(p.fields["suites"]),
			Components: strings.Fields(p.fields["components"]),
			SignedBy:   strings.TrimSpace(p.fields["signed-by"]),
			File:       name,
			Line:       p.line,
		}
		if len(src.Types) == 0 || len(src.URIs) == 0 || len(src.Suites) == 0 {
			errs = append(errs, &SourcesError{name, p.line, "entry needs Types, URIs and Suites"})
			continue
		}
		out = append(out, src)
	}
	return out, errors.Join(errs...)
}

// paragraph is one deb822 stanza; field names are lower-cased.
type paragraph struct {
	line   int
	fields map[string]string
}

func parseParagraphs(name string, data []byte) ([]paragraph, error) {
	var out []paragraph
	var errs []error
	var cur *paragraph
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || last == "" {
				errs = append(errs, &SourcesError{name, n, "continuation line outside a field"})
				continue
			}
			cur.fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) == "" {
			errs = append(errs, &SourcesError{name, n, "want Field: value"})
			continue
		}
		if cur == nil {
			cur = &paragraph{line: n, fields: map[string]string{}}
		}
		last = strings.ToLower(strings.TrimSpace(k))
		cur.fields[last] = strings.TrimSpace(v)
	}
	if cur != nil {
		out = append(out, *cur)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &SourcesError{name, n + 1, err.Error()})
	}
	return out, errors.Join(errs...)
}

// debianCodenames are Debian release codenames and aliases; a suite is a
// Debian suite when its part before the first "-" is one of them.
var debianCodenames = map[string]bool{
	"buzz": true, "rex": true, "bo": true, "hamm": true, "slink": true, "potato": true,
	"woody": true, "sarge": true, "etch": true, "lenny": true, "squeeze": true,
	"wheezy": true, "jessie": true, "stretch": true, "buster": true, "bullseye": true,
	"bookworm": true, "trixie": true, "forky": true, "duke": true, "sid": true,
	"stable": true, "oldstable": true, "oldoldstable": true, "testing": true, "unstable": true,
}

// suiteKind classifies a suite: "debian" for the main archive's suites
// (bookworm, bookworm-updates, bookworm-backports), "security" for the
// security archive's (bookworm-security, buster/updates), "" otherwise.
func suiteKind(suite string) string {
	if base, rest, ok := strings.Cut(suite, "/"); ok {
		if debianCodenames[base] && rest == "updates" {
			return "security"
		}
		return ""
	}
	base, suffix, _ := strings.Cut(suite, "-")
	if !debianCodenames[base] {
		return ""
	}
	switch suffix {
	case "", "updates", "backports", "proposed-updates", "backports-sloppy":
		return "debian"
	case "security":
		return "security"
	}
	return ""
}

// FindMirrors picks the Debian archive and the security archive from
// sources: the first "deb" entry with component main whose suites are
// Debian suites (a plain codename preferred), and likewise for *-security.
// Repositories of other vendors (their suites are not Debian codenames) are ignored.
func FindMirrors(sources []Source) (Mirrors, error) {
	var m Mirrors
	debScore := 0
	for _, s := range sources {
		if !slices.Contains(s.Types, "deb") || !slices.Contains(s.Components, "main") || len(s.URIs) == 0 {
			continue
		}
		for _, suite := range s.Suites {
			uri := strings.TrimRight(s.URIs[0], "/")
			if !strings.Contains(uri, "://") {
				continue
			}
			switch suiteKind(suite) {
			case "debian":
				score := 1
				if !strings.Contains(suite, "-") {
					score = 2
				}
				if score > debScore {
					m.Debian, debScore = uri, score
				}
			case "security":
				if m.Security == "" {
					m.Security = uri
				}
			}
		}
	}
	if m.Debian == "" {
		return m, errors.New("no Debian archive (a deb entry for a Debian suite with component main) in the apt sources")
	}
	return m, nil
}

// ReadHostSources reads and parses the apt sources under root (normally "/"):
// etc/apt/sources.list, etc/apt/sources.list.d/*.list and *.sources. Files
// that do not exist are skipped; parse errors are returned alongside whatever parsed.
func ReadHostSources(root string) ([]Source, error) {
	dir := filepath.Join(root, "etc/apt")
	files := []string{filepath.Join(dir, "sources.list")}
	parts, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*"))
	sort.Strings(parts)
	files = append(files, parts...)
	var all []Source
	var errs []error
	for _, f := range files {
		var parse func(string, []byte) ([]Source, error)
		switch {
		case strings.HasSuffix(f, ".list") || f == files[0]:
			parse = ParseOneLine
		case strings.HasSuffix(f, ".sources"):
			parse = ParseDeb822
		default:
			continue
		}
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := parse(f, data)
		all = append(all, s...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return all, errors.Join(errs...)
}

// HostMirrors finds the mirrors in the apt configuration under root. Parse
// errors in unrelated files do not matter when a Debian archive is found.
func HostMirrors(root string) (Mirrors, error) {
	sources, perr := ReadHostSources(root)
	m, err := FindMirrors(sources)
	if err != nil {
		return m, errors.Join(fmt.Errorf("%s: %w", filepath.Join(root, "etc/apt"), err), perr)
	}
	return m, nil
}
