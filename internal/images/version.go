package images

import (
	"strings"
)

// UpstreamVersion returns the upstream part of a Debian package version:
// without epoch ("1:"), Debian revision (after the last "-") and the
// repack/backport suffixes that follow "+" or "~".
//
//	6.1.119-1             → 6.1.119
//	6.12.12-1~bpo12+1     → 6.12.12
//	20.10.24+dfsg1-1+b6   → 20.10.24
func UpstreamVersion(debVersion string) string {
	v := debVersion
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "+~"); i >= 0 {
		v = v[:i]
	}
	return v
}

// MatchesLine reports whether version have belongs to the release line or
// exact version want: "6.1" matches 6.1 and 6.1.x (not 6.10), "6.1.119"
// matches only 6.1.119. An empty want matches everything.
func MatchesLine(want, have string) bool {
	if want == "" {
		return true
	}
	w := strings.Split(want, ".")
	h := strings.Split(have, ".")
	if len(w) > len(h) {
		return false
	}
	for i := range w {
		if w[i] != h[i] {
			return false
		}
	}
	return true
}
