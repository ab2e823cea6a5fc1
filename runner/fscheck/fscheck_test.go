package fscheck

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/testutil"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// overwrite writes n bytes of 0xA5-ish garbage at off.
func overwrite(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = byte(0xA5 ^ i*7)
	}
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
}

func populated(t *testing.T) string {
	dir := t.TempDir()
	for i := 0; i < 20; i++ {
		data := bytes.Repeat([]byte("MATRIXCTL-DATA-BLOCK-"+strconv.Itoa(i)+"|"), 4096)
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func check(t *testing.T, img, fs string, wantClean bool) {
	t.Helper()
	res, err := Check(context.Background(), img, fs)
	if err != nil {
		t.Fatalf("Check(%s): %v", fs, err)
	}
	if res.Clean != wantClean {
		t.Fatalf("%s: clean=%v, want %v (exit %d)\n%s", fs, res.Clean, wantClean, res.ExitCode, res.Output)
	}
	if res.Tool == "" || len(res.Args) == 0 || res.Output == "" {
		t.Errorf("incomplete result %+v", res)
	}
	t.Logf("%s %v: exit %d, clean %v", res.Tool, res.Args, res.ExitCode, res.Clean)
}

func TestExt4(t *testing.T) {
	testutil.RequiresBinary(t, "mkfs.ext4", "e2fsck", "dumpe2fs")
	img := filepath.Join(t.TempDir(), "ext4.img")
	sparse(t, img, 32<<20)
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-d", populated(t), img)
	check(t, img, "ext4", true)
	// random bytes over group 0's inode table
	dump := run(t, "dumpe2fs", img)
	m := regexp.MustCompile(`Inode table at (\d+)-`).FindStringSubmatch(dump)
	if m == nil {
		t.Fatalf("no inode table in dumpe2fs output")
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	overwrite(t, img, blk*4096, 8192)
	check(t, img, "ext4", false)
}

func TestXFS(t *testing.T) {
	testutil.RequiresBinary(t, "mkfs.xfs", "xfs_repair")
	img := filepath.Join(t.TempDir(), "xfs.img")
	sparse(t, img, 320<<20)
	run(t, "mkfs.xfs", "-q", "-f", img)
	check(t, img, "xfs", true)
	// AG0's AGF and AGI sectors (sectors 1 and 2 with 512-byte sectors)
	overwrite(t, img, 512, 1024)
	check(t, img, "xfs", false)
}

func TestBtrfs(t *testing.T) {
	testutil.RequiresBinary(t, "mkfs.btrfs", "btrfs")
	img := filepath.Join(t.TempDir(), "btrfs.img")
	sparse(t, img, 128<<20)
	run(t, "mkfs.btrfs", "-q", "-f", "--rootdir", populated(t), img)
	check(t, img, "btrfs", true)
	// flip bytes inside a data extent: find a file's pattern in the image
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(b, []byte("MATRIXCTL-DATA-BLOCK-7|"))
	if off < 0 {
		t.Fatal("data pattern not found in the image")
	}
	overwrite(t, img, int64(off)+100, 64)
	check(t, img, "btrfs", false)
}

func TestThin(t *testing.T) {
	testutil.RequiresBinary(t, "thin_check")
	img := filepath.Join(t.TempDir(), "meta.img")
	sparse(t, img, 8<<20)
	// all-zero metadata has no superblock: thin_check reports errors
	res, err := Check(context.Background(), img, "thin")
	if err != nil {
		t.Fatal(err)
	}
	if res.Clean {
		t.Fatalf("zeroed thin metadata passed: %+v", res)
	}
}

func TestOperationalErrors(t *testing.T) {
	if _, err := Check(context.Background(), "/nonexistent.img", "ext4"); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing image: %v", err)
	}
	img := filepath.Join(t.TempDir(), "x.img")
	sparse(t, img, 1<<20)
	if _, err := Check(context.Background(), img, "zfs"); err == nil || !strings.Contains(err.Error(), "zfs") {
		t.Errorf("unknown fs: %v", err)
	}
	testutil.RequiresBinary(t, "e2fsck")
	// e2fsck on a file that is no filesystem: exit 8, an operational error
	_, err := Check(context.Background(), img, "ext4")
	var te *ToolError
	if !errors.As(err, &te) || te.ExitCode != 8 || te.Output == "" {
		t.Errorf("garbage image: %v", err)
	}
}
