package kconfig

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got := Parse([]byte(`#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"
CONFIG_OVERLAY_FS=m
CONFIG_EXT4_FS=y
# CONFIG_AUFS_FS is not set
CONFIG_LOG_BUF_SHIFT=18
CONFIG_CMDLINE="a \"quoted\" \\ path"
CONFIG_BAD_QUOTE="a"b"
  CONFIG_INDENTED=y  
# CONFIG_not a symbol is not set
CONFIG_=y
CONFIG-DASH=y
NOT_CONFIG=y
CONFIG_EXT4_FS=m
`))
	want := Config{
		"CONFIG_CC_VERSION_TEXT": "gcc-12 (Debian 12.2.0-14) 12.2.0",
		"CONFIG_OVERLAY_FS":      "m",
		"CONFIG_EXT4_FS":         "m", // the later line wins
		"CONFIG_AUFS_FS":         "n",
		"CONFIG_LOG_BUF_SHIFT":   "18",
		"CONFIG_CMDLINE":         `a "quoted" \ path`,
		"CONFIG_BAD_QUOTE":       `"a"b"`,
		"CONFIG_INDENTED":        "y",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if !got.Enabled("CONFIG_OVERLAY_FS") || got.Enabled("CONFIG_AUFS_FS") || got.Enabled("CONFIG_NOPE") {
		t.Error("Enabled: want y and m only")
	}
}

func TestRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("CONFIG_VETH=m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Read(path); err != nil || cfg["CONFIG_VETH"] != "m" {
		t.Errorf("Read: %v, %v", cfg, err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("Read of a missing file: no error")
	}
}

// format writes cfg the way Kconfig does: the inverse of Parse.
func format(cfg Config) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		switch v := cfg[k]; {
		case v == No:
			b.WriteString("# " + k + " is not set\n")
		case v == Yes || v == Module || isNumber(v):
			b.WriteString(k + "=" + v + "\n")
		default:
			b.WriteString(k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + "\"\n")
		}
	}
	return b.String()
}

func isNumber(v string) bool {
	return v != "" && strings.Trim(v, "0123456789") == "" || strings.HasPrefix(v, "0x") && len(v) > 2 && strings.Trim(v[2:], "0123456789abcdefABCDEF") == ""
}

// FuzzParse: a kernel config is outside input. Parse never panics, keeps
// only CONFIG_ symbols, and what it returns survives writing it back out in
// Kconfig's syntax and parsing it again. The seed corpus is in
// testdata/fuzz/FuzzParse (excerpts of a Debian 6.1 config, quoting, junk).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Parse(b)
		for k, v := range cfg {
			if !isSymbol(k) {
				t.Fatalf("key %q is not a CONFIG_ symbol", k)
			}
			if strings.ContainsAny(v, "\n") {
				t.Fatalf("value %q of %s spans lines", v, k)
			}
		}
		// Values with surrounding blanks or carriage returns cannot be
		// written back as a line: Parse trims lines.
		clean := Config{}
		for k, v := range cfg {
			if strings.TrimSpace(v) == v && !strings.ContainsRune(v, '\r') {
				clean[k] = v
			}
		}
		if again := Parse([]byte(format(clean))); !maps.Equal(again, clean) {
			t.Fatalf("round trip:\n got %q\nwant %q\nfrom %q", again, clean, format(clean))
		}
	})
}

func TestModules(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"kernel/net/bridge/br_netfilter.ko", "kernel/drivers/net/veth.ko.xz",
		"kernel/fs/overlayfs/overlay.ko.zst", "kernel/drivers/block/virtio-blk.ko.gz", "modules.dep", "kernel/fs/notes.txt"} {
		path := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mods, err := ReadModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"br_netfilter", "overlay", "veth", "virtio_blk"}
	if got := slices.Sorted(maps.Keys(mods)); !slices.Equal(got, want) {
		t.Errorf("ReadModules: %v, want %v", got, want)
	}
	for _, name := range []string{"br-netfilter", "veth", "virtio_blk", "virtio-blk", "overlay"} {
		if !mods.Has(name) || !HasModule(dir, name) {
			t.Errorf("%s: not found (set %v, walk %v)", name, mods.Has(name), HasModule(dir, name))
		}
	}
	for _, name := range []string{"aufs", "notes", "modules"} {
		if mods.Has(name) || HasModule(dir, name) {
			t.Errorf("%s: found", name)
		}
	}
	if m, err := ReadModules(filepath.Join(dir, "none")); err != nil || len(m) != 0 {
		t.Errorf("missing tree: %v, %v; want no modules, no error", m, err)
	}
}
