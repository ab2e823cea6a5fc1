package runner

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/runner/fscheck"
)

// TestFlipPromisedBlock builds a real ext4 image holding a Docker volume
// of a kept IO probe (journal + two promised files, one withdrawn), flips
// the promised block with debugfs's help and checks that exactly that
// file's block changed, and that the finding names the file.
func TestFlipPromisedBlock(t *testing.T) {
	testutil.RequiresBinary(t, "mkfs.ext4", "debugfs")
	src := t.TempDir()
	vol := filepath.Join(src, "volumes", "mxp-flip1abc-io", "_data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(vol, "io"), 0o755))
	data := bytes.Repeat([]byte("matrixctl-block-"), 4096/16*2) // two 4 KiB blocks
	must(os.WriteFile(filepath.Join(vol, "io", "f1"), data, 0o644))
	must(os.WriteFile(filepath.Join(vol, "io", "f2"), data, 0o644))
	journal := `{"p":"/data/vol/io/f1","id":1,"seed":2,"runs":[[0,2,1]]}
{"p":"/data/layer/f9","id":9,"seed":2,"runs":[[0,1,1]]}
{"p":"/data/vol/io/f2","id":2,"seed":2,"runs":[[0,2,1]]}
{"p":"/data/vol/io/f2","w":true}
`
	must(os.WriteFile(filepath.Join(vol, "journal.jsonl"), []byte(journal), 0o644))
	img := filepath.Join(t.TempDir(), "scratch.img")
	if out, err := exec.Command("mkfs.ext4", "-F", "-q", "-d", src, img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v: %s", err, out)
	}
	where, err := flipPromisedBlock(context.Background(), Scratch{Path: img, FS: "ext4"}, "flip1abc")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(where, "/data/vol/io/f1 at offset 64") {
		t.Errorf("finding %q does not name the promised file f1 (f2 was withdrawn, f9 is in the layer)", where)
	}
	f1, err := fscheck.Debugfs(context.Background(), img, "cat /volumes/mxp-flip1abc-io/_data/io/f1")
	must(err)
	f2, err := fscheck.Debugfs(context.Background(), img, "cat /volumes/mxp-flip1abc-io/_data/io/f2")
	must(err)
	if !bytes.Equal(f2, data) {
		t.Error("f2 changed")
	}
	if bytes.Equal(f1, data) || !bytes.Equal(f1[:64], data[:64]) || !bytes.Equal(f1[64+flipBytes:], data[64+flipBytes:]) {
		t.Errorf("f1 should differ from the original in bytes 64..%d only", 64+flipBytes)
	}
	if _, err := flipPromisedBlock(context.Background(), Scratch{Path: img, FS: "ext4"}, "nosuchrun"); err == nil {
		t.Error("a run without a journal in the image: no error")
	}
	if _, err := flipPromisedBlock(context.Background(), Scratch{Path: img, FS: "xfs"}, "flip1abc"); err == nil {
		t.Error("xfs: no error")
	}
}
