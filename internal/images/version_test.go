package images

import "testing"

func TestUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{
		"6.1.119-1":                   "6.1.119",
		"6.12.12-1~bpo12+1":           "6.12.12",
		"20.10.24+dfsg1-1+deb12u1+b6": "20.10.24",
		"26.1.5+dfsg1-9+b9":           "26.1.5",
		"1:2.3-4":                     "2.3",
		"5.10.234-1":                  "5.10.234",
		"3.16.0":                      "3.16.0",
		"":                            "",
	} {
		if got := UpstreamVersion(in); got != want {
			t.Errorf("UpstreamVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchesLine(t *testing.T) {
	for _, tc := range []struct {
		want, have string
		ok         bool
	}{
		{"6.1", "6.1.119", true},
		{"6.1", "6.1", true},
		{"6.1", "6.10.2", false},
		{"6.1", "6.12.43", false},
		{"6.1.119", "6.1.119", true},
		{"6.1.119", "6.1.11", false},
		{"6.1.119", "6.1", false},
		{"5.10", "5.10.234", true},
		{"6", "6.1.2", true},
		{"", "6.1.2", true},
		{"3.16.0", "3.16.0", true},
	} {
		if got := MatchesLine(tc.want, tc.have); got != tc.ok {
			t.Errorf("MatchesLine(%q, %q) = %v, want %v", tc.want, tc.have, got, tc.ok)
		}
	}
}

func TestPackageErrorMessage(t *testing.T) {
	e := &PackageError{Suite: "trixie", Package: "docker.io", Want: "20.10.24", Have: []string{"26.1.5+dfsg1-9+b9"}}
	if got, want := e.Error(), "suite trixie has no package docker.io version 20.10.24 (it has 26.1.5+dfsg1-9+b9)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := (&PackageError{Suite: "sid", Package: "nope"}).Error(), "suite sid has no package nope"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
