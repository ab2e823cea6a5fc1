package images

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const deb822Fixture = `# comment
Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://vendor.invalid/node_20.x
Suites: nodistro
Components: main
Enabled: yes
`

func TestParseDeb822(t *testing.T) {
	got, err := ParseDeb822("debian.sources", []byte(deb822Fixture))
	if err != nil {
		t.Fatal(err)
	}
	want := []Source{
		{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm", "bookworm-updates"},
			Components: []string{"main"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg", File: "debian.sources", Line: 2},
		{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian-security"}, Suites: []string{"bookworm-security"},
			Components: []string{"main", "contrib"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg", File: "debian.sources", Line: 8},
		{Types: []string{"deb"}, URIs: []string{"http://vendor.invalid/node_20.x"}, Suites: []string{"nodistro"},
			Components: []string{"main"}, File: "debian.sources", Line: 14},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseDeb822Errors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no colon", "Types deb\n", "x.sources:1: want Field: value"},
		{"continuation first", " foo\n", "x.sources:1: continuation line outside a field"},
		{"missing uris", "Types: deb\nSuites: bookworm\n", "x.sources:1: entry needs Types, URIs and Suites"},
		{"disabled is fine", "Types: deb\nEnabled: no\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDeb822("x.sources", []byte(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseOneLine(t *testing.T) {
	in := `# main archive
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.invalid/debian bookworm main contrib # trailing
deb-src http://mirror.invalid/debian bookworm main
deb	http://mirror.invalid/debian-security bookworm-security main

deb http://vendor.invalid/apt cloud-sdk-bookworm main
`
	got, err := ParseOneLine("sources.list", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("got %d entries, want 4: %+v", len(got), got)
	}
	first := Source{Types: []string{"deb"}, URIs: []string{"http://mirror.invalid/debian"}, Suites: []string{"bookworm"},
		Components: []string{"main", "contrib"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg", File: "sources.list", Line: 2}
	if !reflect.DeepEqual(got[0], first) {
		t.Errorf("got  %+v\nwant %+v", got[0], first)
	}
	if got[2].URIs[0] != "http://mirror.invalid/debian-security" || got[2].Line != 4 {
		t.Errorf("tab-separated entry: %+v", got[2])
	}
	for _, tc := range []struct{ in, want string }{
		{"deb [signed-by=x http://mirror.invalid/debian bookworm main\n", "s.list:1: unclosed [ in options"},
		{"deb http://mirror.invalid/debian\n", "s.list:1: want: type uri suite [component ...]"},
		{"rpm http://mirror.invalid/debian bookworm\n", `s.list:1: unknown type "rpm"`},
	} {
		_, err := ParseOneLine("s.list", []byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestFindMirrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []Source
		want    Mirrors
		wantErr bool
	}{
		{
			name:    "deb822 host",
			sources: must(ParseDeb822("d.sources", []byte(deb822Fixture))),
			want:    Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"},
		},
		{
			name: "plain codename preferred over backports",
			sources: must(ParseOneLine("s.list", []byte(
				"deb http://other.invalid/debian bookworm-backports main\ndeb http://mirror.invalid/debian/ trixie main\n"))),
			want: Mirrors{Debian: "http://mirror.invalid/debian"},
		},
		{
			name: "old security layout",
			sources: must(ParseOneLine("s.list", []byte(
				"deb http://mirror.invalid/debian buster main\ndeb http://mirror.invalid/debian-security buster/updates main\n"))),
			want: Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"},
		},
		{
			name: "vendor repos and deb-src and non-main ignored",
			sources: must(ParseOneLine("s.list", []byte(
				"deb http://vendor.invalid/apt cloud-sdk-bookworm main\ndeb-src http://mirror.invalid/debian bookworm main\n"+
					"deb http://mirror.invalid/debian bookworm contrib\ndeb http://vendor.invalid/ubuntu jammy main\n"))),
			wantErr: true,
		},
		{name: "empty", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FindMirrors(tc.sources)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func must(s []Source, err error) []Source {
	if err != nil {
		panic(err)
	}
	return s
}

func TestHostMirrorsFromRoot(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etc/apt/sources.list.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("debian.sources", deb822Fixture)
	write("broken.list", "deb [oops\n")
	write("vendor.list.disabled", "deb http://vendor.invalid/debian bookworm main\n")
	m, err := HostMirrors(root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Debian != "http://mirror.invalid/debian" || m.Security != "http://mirror.invalid/debian-security" {
		t.Errorf("mirrors %+v", m)
	}

	// No Debian entry: the error names the directory and the parse error with file:line.
	if err := os.Remove(filepath.Join(d, "debian.sources")); err != nil {
		t.Fatal(err)
	}
	_, err = HostMirrors(root)
	var se *SourcesError
	if err == nil || !errors.As(err, &se) || se.Line != 1 || !strings.Contains(err.Error(), "broken.list:1") {
		t.Errorf("error %v, want one naming broken.list:1", err)
	}
}

func TestCacheMirrorOverride(t *testing.T) {
	t.Setenv("MATRIXCTL_MIRROR", "http://mirror.invalid/debian/")
	t.Setenv("MATRIXCTL_SECURITY_MIRROR", "http://mirror.invalid/debian-security")
	c, err := New(t.TempDir(), WithAptRoot(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Mirrors()
	if err != nil {
		t.Fatal(err)
	}
	if m != (Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"}) {
		t.Errorf("mirrors %+v", m)
	}
	c2, _ := New(t.TempDir(), WithAptRoot(t.TempDir()), WithMirrors("http://option.invalid/debian", ""))
	if m, _ := c2.Mirrors(); m.Debian != "http://option.invalid/debian" || m.Security != "http://mirror.invalid/debian-security" {
		t.Errorf("option override: %+v", m)
	}
}

func TestSourceLines(t *testing.T) {
	m := Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"}
	strip := func(lines []string) string {
		return strings.ReplaceAll(strings.Join(lines, "\n"), "[signed-by="+KeyringPath+"] ", "")
	}
	if got, want := strip(sourceLines(m, "bookworm-backports")), `deb http://mirror.invalid/debian bookworm main
deb http://mirror.invalid/debian bookworm-updates main
deb http://mirror.invalid/debian-security bookworm-security main
deb http://mirror.invalid/debian bookworm-backports main`; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := strip(sourceLines(m, "sid")); strings.Contains(got, "security") {
		t.Errorf("sid has no security suite:\n%s", got)
	}
}

func FuzzParseSources(f *testing.F) {
	f.Add([]byte(deb822Fixture))
	f.Add([]byte("deb [signed-by=/k.gpg arch=amd64] http://mirror.invalid/debian bookworm main\n# c\ndeb-src x y\n"))
	f.Add([]byte("Types: deb\n URIs: x\nSuites:\n\n\nEnabled: no\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func(string, []byte) ([]Source, error){ParseOneLine, ParseDeb822} {
			srcs, _ := parse("fuzz", data)
			for _, s := range srcs {
				if len(s.URIs) == 0 || len(s.Suites) == 0 || len(s.Types) == 0 {
					t.Fatalf("entry without uri/suite/type: %+v", s)
				}
				if s.Line < 1 {
					t.Fatalf("entry without line: %+v", s)
				}
			}
			m, err := FindMirrors(srcs)
			if err == nil && m.Debian == "" {
				t.Fatal("no error and no mirror")
			}
		}
	})
}
