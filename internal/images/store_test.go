package images

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStore is a temp cache with one entry of every kind, each with a
// payload of a known size and a last use days ago.
type fakeStore struct {
	dir                         string
	kernel, rootfs, initrd, box string
	partial                     string
	now                         time.Time
}

func writeSized(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil { // zeros, but written: allocated
		t.Fatal(err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// used sets an entry's last use to days ago.
func used(t *testing.T, path string, at time.Time) {
	t.Helper()
	p := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		p = filepath.Join(path, lastUsedName)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

func newFakeStore(t *testing.T) *fakeStore {
	t.Helper()
	now := time.Now()
	s := &fakeStore{dir: t.TempDir(), now: now}
	created := now.Add(-60 * 24 * time.Hour)
	s.kernel = filepath.Join(s.dir, "kernels", "k1")
	writeSized(t, filepath.Join(s.kernel, "vmlinuz"), 1<<20)
	writeJSON(t, filepath.Join(s.kernel, manifestName), manifest{Format: formatVersion, Kind: "kernels", Created: created,
		Kernel: &Kernel{Release: "6.1.0-28-amd64", Package: "linux-image-6.1.0-28-amd64", PackageVersion: "6.1.119-1"}})
	used(t, s.kernel, now.Add(-20*24*time.Hour))

	s.rootfs = filepath.Join(s.dir, "rootfs", "r1")
	writeSized(t, filepath.Join(s.rootfs, "rootfs.ext4"), 2<<20)
	writeJSON(t, filepath.Join(s.rootfs, manifestName), manifest{Format: formatVersion, Kind: "rootfs", Created: created,
		Inputs: map[string]string{"docker": "20.10.24"}, Rootfs: &Rootfs{Suite: "bookworm"}})
	used(t, s.rootfs, now.Add(-time.Hour))

	s.initrd = filepath.Join(InitramfsDir(s.dir), "i1.cpio")
	writeSized(t, s.initrd, 256<<10)
	if err := os.WriteFile(filepath.Join(InitramfsDir(s.dir), "i1"+InitramfsDescriptionSuffix), []byte("kernel 6.1.0-28-amd64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	used(t, s.initrd, now.Add(-30*24*time.Hour))

	s.box = filepath.Join(s.dir, "boxes", "b1")
	writeSized(t, filepath.Join(s.box, "matrixctl.box"), 512<<10)
	writeJSON(t, filepath.Join(s.box, manifestName), map[string]any{"key": "b1", "created": created,
		"box": map[string]string{"name": "matrixctl-debian12-k6.1.0-28-amd64-docker20.10.24-b1", "release": "6.1.0-28-amd64"}})
	used(t, s.box, now.Add(-2*24*time.Hour))

	s.partial = filepath.Join(s.dir, "rootfs", "r2")
	writeSized(t, filepath.Join(s.partial, "rootfs.ext4"), 128<<10)
	used(t, s.partial, now.Add(-40*24*time.Hour))
	// Not entries: a builder's temp dir, lock files, the apt environment.
	writeSized(t, filepath.Join(s.dir, "rootfs", ".tmp-r3-123", "x"), 4096)
	writeSized(t, filepath.Join(s.dir, "rootfs", "r1.lock"), 0)
	writeSized(t, filepath.Join(s.dir, "apt", "bookworm", "sources.list"), 100)
	return s
}

func byKey(es []Entry) map[string]Entry {
	m := map[string]Entry{}
	for _, e := range es {
		m[e.Key] = e
	}
	return m
}

func TestListEntriesEveryKind(t *testing.T) {
	s := newFakeStore(t)
	es, err := ListEntries(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key, kind, desc string
		min             int64
	}{
		{"r2", KindRootfs, "partial (no manifest)", 128 << 10},
		{"i1", KindInitramfs, "guest-agent initramfs for kernel 6.1.0-28-amd64", 256 << 10},
		{"k1", KindKernel, "6.1.0-28-amd64 (linux-image-6.1.0-28-amd64 6.1.119-1)", 1 << 20},
		{"b1", KindBox, "matrixctl-debian12-k6.1.0-28-amd64-docker20.10.24-b1 (kernel 6.1.0-28-amd64)", 512 << 10},
		{"r1", KindRootfs, "bookworm, docker 20.10.24", 2 << 20},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(es), len(want), es)
	}
	for i, w := range want { // least recently used first
		e := es[i]
		if e.Key != w.key || e.Kind != w.kind || e.Description != w.desc || e.Size < w.min || e.InUse {
			t.Errorf("entry %d: %+v, want key %s kind %s %q size >= %d, not in use", i, e, w.key, w.kind, w.desc, w.min)
		}
		if e.Created.IsZero() || e.LastUsed.IsZero() {
			t.Errorf("%s: no created/last-used times: %+v", e.Key, e)
		}
	}
	if b := byKey(es)["b1"]; b.Box == "" {
		t.Errorf("box entry names no registered box: %+v", b)
	}
}

// holdShared starts another process holding a shared flock on path, as a
// run booting from the entry does; it is killed at the end of the test.
func holdShared(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatalf("flock(1) (util-linux) is needed: %v", err)
	}
	cmd := exec.Command("flock", "--shared", path, "sh", "-c", "echo held; exec sleep 60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	b := make([]byte, 5)
	if _, err := out.Read(b); err != nil || string(b[:4]) != "held" {
		t.Fatalf("flock child: %q %v", b, err)
	}
}

func TestPruneMaxSizeSkipsEntriesInUseByAnotherProcess(t *testing.T) {
	s := newFakeStore(t)
	holdShared(t, s.kernel)
	before, _ := ListEntries(s.dir)
	if !byKey(before)["k1"].InUse {
		t.Fatalf("kernel held by another process is not in use: %+v", byKey(before)["k1"])
	}
	res, err := Prune(s.dir, PruneOptions{MaxSize: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Entry.Key != "k1" || res.Skipped[0].Reason != "in use" {
		t.Fatalf("skipped %+v, want the kernel in use", res.Skipped)
	}
	var freed int64
	for _, e := range res.Removed {
		freed += e.Size
		if _, err := os.Lstat(e.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", e.Path, err)
		}
	}
	if len(res.Removed) != 4 || freed != res.Freed || res.Freed < (2<<20)+(512<<10)+(256<<10)+(128<<10) {
		t.Errorf("removed %d entries, %d bytes (counted %d): %+v", len(res.Removed), res.Freed, freed, res.Removed)
	}
	if _, err := os.Stat(filepath.Join(s.kernel, "vmlinuz")); err != nil {
		t.Errorf("kernel in use was touched: %v", err)
	}
	if _, err := os.Stat(filepath.Join(InitramfsDir(s.dir), "i1"+InitramfsDescriptionSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("initramfs description left behind: %v", err)
	}
	if des, _ := os.ReadDir(filepath.Join(s.dir, trashDir)); len(des) != 0 {
		t.Errorf("trash not emptied: %v", des)
	}
	after, _ := ListEntries(s.dir)
	if len(after) != 1 || after[0].Key != "k1" || res.Kept != after[0].Size {
		t.Errorf("left %+v (kept %d)", after, res.Kept)
	}
}

func TestPruneOlderThanAndLRU(t *testing.T) {
	s := newFakeStore(t)
	res, err := Prune(s.dir, PruneOptions{OlderThan: 14 * 24 * time.Hour, MaxSize: -1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range res.Removed {
		keys = append(keys, e.Key)
	}
	if strings.Join(keys, ",") != "r2,i1,k1" {
		t.Errorf("dry run --older-than 14d would remove %v, want r2,i1,k1 (oldest use first)", keys)
	}
	if es, _ := ListEntries(s.dir); len(es) != 5 {
		t.Fatalf("dry run removed entries: %d left", len(es))
	}
	// 3 MiB allowed: the least recently used go until the rest fits; the
	// 2 MiB rootfs used an hour ago stays.
	res, err = Prune(s.dir, PruneOptions{MaxSize: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	left := byKey(mustList(t, s.dir))
	if _, ok := left["r1"]; !ok || res.Kept > 3<<20 {
		t.Errorf("after --max-size 3MiB: left %v, kept %d", left, res.Kept)
	}
	if _, ok := left["r2"]; ok {
		t.Errorf("least recently used entry r2 kept: %v", left)
	}
}

func mustList(t *testing.T, dir string) []Entry {
	t.Helper()
	es, err := ListEntries(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestPruneSkipsEntryBeingBuilt(t *testing.T) {
	s := newFakeStore(t)
	unlock, err := LockFile(context.Background(), s.rootfs+".lock") // a builder (second fd: flock is per open file)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	res, err := Prune(s.dir, PruneOptions{MaxSize: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Entry.Key != "r1" || res.Skipped[0].Reason != "being built or verified" {
		t.Errorf("skipped %+v, want r1 being built", res.Skipped)
	}
}

// A prune that died after the rename leaves the entry in the trash, never
// at its place; the next prune finishes the removal.
func TestPruneEmptiesTrashOfCrashedPrune(t *testing.T) {
	s := newFakeStore(t)
	half := filepath.Join(s.dir, trashDir, "rootfs-r9-x")
	writeSized(t, filepath.Join(half, "rootfs.ext4"), 4096)
	if _, err := Prune(s.dir, PruneOptions{MaxSize: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trash left: %v", err)
	}
	if es := mustList(t, s.dir); len(es) != 5 {
		t.Errorf("prune with no limits removed entries: %d left", len(es))
	}
}

func TestUseRecordsUseAndSeesPrunedEntry(t *testing.T) {
	s := newFakeStore(t)
	l, err := Use(s.initrd)
	if err != nil {
		t.Fatal(err)
	}
	if e := byKey(mustList(t, s.dir))["i1"]; !e.InUse || time.Since(e.LastUsed) > time.Minute {
		t.Errorf("leased initramfs: %+v, want in use and used just now", e)
	}
	l.Release()
	l.Release()
	if e := byKey(mustList(t, s.dir))["i1"]; e.InUse {
		t.Errorf("released lease still in use")
	}
	// Opened before a prune renamed it, locked after: Use says so.
	f, err := os.Open(s.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Rename(s.rootfs, s.rootfs+"-gone"); err != nil {
		t.Fatal(err)
	}
	if samePath(f, s.rootfs) {
		t.Error("renamed entry still seen at its path")
	}
	if _, err := Use(s.rootfs); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Use of a pruned entry: %v", err)
	}
}

// A Cache leases every entry it hands out until Close: a prune in between
// skips it, one after Close removes it, and the next request rebuilds.
func TestCacheHoldsEntriesItHandsOut(t *testing.T) {
	dir := t.TempDir()
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	builds := 0
	build := func(ctx context.Context, tmp string, m *manifest) error {
		builds++
		m.Rootfs = &Rootfs{Suite: "bookworm"}
		return os.WriteFile(filepath.Join(tmp, "rootfs.ext4"), []byte("image"), 0o644)
	}
	p, _, err := c.entry(context.Background(), "rootfs", "abc", nil, build)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.entry(context.Background(), "rootfs", "abc", nil, build); err != nil || builds != 1 {
		t.Fatalf("reuse: %v, %d builds", err, builds)
	}
	res, err := Prune(dir, PruneOptions{MaxSize: 0})
	if err != nil || len(res.Removed) != 0 || len(res.Skipped) != 1 {
		t.Fatalf("prune while held: %+v %v", res, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if res, err := Prune(dir, PruneOptions{MaxSize: 0}); err != nil || len(res.Removed) != 1 || res.Removed[0].Path != p {
		t.Fatalf("prune after Close: %+v %v", res, err)
	}
	if _, _, err := c.entry(context.Background(), "rootfs", "abc", nil, build); err != nil || builds != 2 {
		t.Fatalf("after prune: %v, %d builds (want a rebuild)", err, builds)
	}
	c.Close()
}

func TestDiskSpaceLow(t *testing.T) {
	d, err := DiskSpaceOf(filepath.Join(t.TempDir(), "not", "yet"))
	if err != nil || d.Total == 0 || d.Free > d.Total {
		t.Fatalf("%+v %v", d, err)
	}
	for _, c := range []struct {
		d   DiskSpace
		low bool
	}{
		{DiskSpace{Free: 5 << 30, Total: 100 << 30}, true},   // under 10 GiB
		{DiskSpace{Free: 50 << 30, Total: 1000 << 30}, true}, // under 10 %
		{DiskSpace{Free: 50 << 30, Total: 100 << 30}, false},
	} {
		if got := c.d.Low(10<<30, 10); got != c.low {
			t.Errorf("%+v: low %v, want %v", c.d, got, c.low)
		}
	}
}
