// Package kconfig reads what a kernel was built with — its config file and
// its module tree — and checks it against what a cell needs before it boots
// (the preflight, in the spirit of moby's contrib/check-config.sh): the
// requirements are rows of a table (requirements.go), each citing a source
// a user can open, decided by one function, Check.
//
// It is a leaf: it imports internal/drivers (the storage drivers' kernel
// needs) and nothing of the parts, so the providers, the core and the CLI
// (matrixctl plan) all use it.
package kconfig

import (
	"os"
	"strings"
)

// Config is a parsed kernel config: symbol (CONFIG_X) → value. Tristates
// are "y", "m" or "n" (from "# CONFIG_X is not set"); strings are
// unquoted; numbers are as written. A symbol the file does not mention is
// absent.
type Config map[string]string

// Tristate values.
const (
	Yes    = "y"
	Module = "m"
	No     = "n"
)

// Read parses the config file at path.
func Read(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b), nil
}

// Parse reads a kernel config: CONFIG_X=y|m|n, CONFIG_X="string",
// CONFIG_X=123 and "# CONFIG_X is not set". The file is outside input:
// any other line (comments, blanks, junk) is ignored, and a later line
// for a symbol overrides an earlier one, as in Kconfig.
func Parse(b []byte) Config {
	cfg := Config{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if sym, ok := strings.CutSuffix(rest, " is not set"); ok && isSymbol(sym) {
				cfg[sym] = No
			}
			continue
		}
		sym, val, ok := strings.Cut(line, "=")
		if !ok || !isSymbol(sym) {
			continue
		}
		cfg[sym] = unquote(val)
	}
	return cfg
}

// isSymbol reports whether s is CONFIG_ followed by letters, digits and underscores.
func isSymbol(s string) bool {
	name, ok := strings.CutPrefix(s, "CONFIG_")
	if !ok || name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// unquote undoes Kconfig's string quoting ("a \"b\" \\ c"); a value that
// is not a well-formed quoted string is kept as written.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	var b strings.Builder
	inner := v[1 : len(v)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\' && i+1 < len(inner):
			i++
			b.WriteByte(inner[i])
		case c == '\\' || c == '"':
			return v // a lone backslash or an unescaped quote: not Kconfig's quoting
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Enabled reports whether sym is built in (y) or a module (m).
func (c Config) Enabled(sym string) bool {
	v := c[sym]
	return v == Yes || v == Module
}
