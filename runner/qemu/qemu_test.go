package qemu

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/runner/images"
)

func TestShellQuote(t *testing.T) {
	argv := []string{"qemu", "-append", "console=ttyS0 panic=-1", "it's", "", "a,b"}
	q := shellQuote(argv)
	out, err := exec.Command("sh", "-c", "for a in "+q+"; do printf '%s\\n' \"$a\"; done").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if strings.Join(got, "|") != strings.Join(argv, "|") {
		t.Errorf("sh read %q back as %q", q, got)
	}
}

func TestReadLineDropsLongLines(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 300) + "\nnext\nlast"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, err := readLine(r, 100)
		got = append(got, strings.TrimSpace(string(line)))
		if err != nil {
			break
		}
	}
	want := []string{"short", "", "next", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestConfigDefaultsErrors(t *testing.T) {
	cases := map[string]Config{
		"no kernel":   {Dir: t.TempDir()},
		"no dir":      {Kernel: &images.Kernel{}, Rootfs: &images.Rootfs{}},
		"missing img": {Dir: t.TempDir(), Kernel: &images.Kernel{Vmlinuz: "/nonexistent"}, Rootfs: &images.Rootfs{}},
	}
	for name, c := range cases {
		if err := c.defaults(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestQemuEscape(t *testing.T) {
	if got := qemuEscape("/a,b/c"); got != "/a,,b/c" {
		t.Errorf("got %q", got)
	}
}

func TestGateWriter(t *testing.T) {
	var g gateWriter
	g.Write([]byte("early "))
	var sb strings.Builder
	g.open(&sb)
	g.Write([]byte("late"))
	if sb.String() != "early late" {
		t.Errorf("got %q", sb.String())
	}
}
