package fscheck

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/testutil"
)

// pvHead is the first MiB of a real scratch disk: the agent's direct-lvm
// steps on Debian 11 (LVM 2.03.11), after lvchange --metadataprofile (the
// ring holds metadata seqno 1-6).
func pvHead(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open("testdata/lvm/bullseye-docker-thinpool.pvhead.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(z); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The metadata LV lies where the newest metadata says: thinpool_tmeta,
// 25 extents of 4 MiB at PE 2431, after pe_start 2048 sectors.
func TestLVMThinMeta(t *testing.T) {
	got, err := lvmThinMeta(bytes.NewReader(pvHead(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := []extent{{off: (2048 + 2431*8192) * 512, len: 25 * 8192 * 512}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestLVMThinMetaErrors(t *testing.T) {
	head := pvHead(t)
	noMagic := bytes.Clone(head)
	copy(noMagic[4096+4:], "not the mda magic")
	cases := []struct {
		name string
		img  []byte
		want string
	}{
		{"zeroed disk", make([]byte, 1<<20), "no LVM label"},
		{"damaged metadata area header", noMagic, "bad magic"},
	}
	for _, c := range cases {
		if _, err := lvmThinMeta(bytes.NewReader(c.img)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestParseLVMConfig(t *testing.T) {
	text := `# comment
vg { # trailing comment
	id = "a-b"
	extent_size = 8192
	status = ["READ", "WRITE"]
	empty = []
	desc = "quote \" inside"
	lv { stripes = [
		"pv0", 2431
	] }
}
contents = "Text Format Volume Group"
`
	root, err := parseLVMConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	vg := root.sections["vg"]
	if vg == nil || vg.str("id") != "a-b" || vg.str("desc") != `quote " inside` || root.str("contents") != "Text Format Volume Group" {
		t.Fatalf("parsed %+v", root)
	}
	if n, _ := vg.num("extent_size"); n != 8192 {
		t.Errorf("extent_size %d", n)
	}
	if got := vg.sections["lv"].values["stripes"]; !reflect.DeepEqual(got, []any{"pv0", int64(2431)}) {
		t.Errorf("stripes %#v", got)
	}
	for _, bad := range []string{"vg {", "x = ", `x = "open`, "x = [1, 2", "}", "x y"} {
		if _, err := parseLVMConfig([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// Check "lvm-thin" runs thin_check on the metadata LV inside the PV: clean
// metadata (thin_restore of an empty pool) passes, zeroed metadata does not.
func TestLVMThinCheck(t *testing.T) {
	testutil.RequiresBinary(t, "thin_check")
	testutil.RequiresBinary(t, "thin_restore")
	dir := t.TempDir()
	meta := filepath.Join(dir, "meta")
	sparse(t, meta, 25*8192*512)
	xml := filepath.Join(dir, "meta.xml")
	if err := os.WriteFile(xml, []byte(`<superblock uuid="" time="0" transaction="0" data_block_size="1024" nr_data_blocks="2431"></superblock>`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "thin_restore", "-i", xml, "-o", meta)
	img := filepath.Join(dir, "scratch.img")
	sparse(t, img, 10<<30)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pvHead(t), 0); err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(m, (2048+2431*8192)*512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	check(t, img, "lvm-thin", true)
	overwrite(t, img, (2048+2431*8192)*512, 4096) // the superblock
	check(t, img, "lvm-thin", false)
	if left, _ := filepath.Glob(filepath.Join(dir, "thin-meta-*")); len(left) > 0 {
		t.Errorf("copies left behind: %v", left)
	}
}

// FuzzLVMThinMeta: the LVM label, metadata ring and metadata text are what
// the guest wrote to its scratch disk, so they are outside input. Whatever
// the bytes, lvmThinMeta returns an error or extents that lie inside the
// image's address space; it never panics or loops.
func FuzzLVMThinMeta(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("LABELONE"))
	if b, err := os.ReadFile("testdata/lvm/bullseye-docker-thinpool.pvhead.gz"); err == nil {
		if z, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			var head bytes.Buffer
			if _, err := head.ReadFrom(z); err == nil {
				f.Add(head.Bytes()[:64<<10])
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		exts, err := lvmThinMeta(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, e := range exts {
			if e.off < 0 || e.len <= 0 {
				t.Fatalf("extent %+v from accepted metadata", e)
			}
		}
	})
}

// FuzzParseLVMConfig: the metadata text alone, so the fuzzer reaches the
// parser without having to forge a label and ring first.
func FuzzParseLVMConfig(f *testing.F) {
	f.Add([]byte(`docker { id = "x" seqno = 6 physical_volumes { pv0 { id = "u" pe_start = 2048 } } }`))
	f.Add([]byte("a = [1, \"b\", 3] # comment\nc {\n}\n"))
	f.Add([]byte(`x = "unterminated`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseLVMConfig(b)
	})
}
