package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBuild writes two files and counts its calls.
func fakeBuild(calls *atomic.Int32, delay time.Duration) func(context.Context, string, *manifest) error {
	return func(ctx context.Context, tmp string, m *manifest) error {
		calls.Add(1)
		time.Sleep(delay)
		if err := os.MkdirAll(filepath.Join(tmp, "sub"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "a.img"), []byte("0123456789abcdef"), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "sub", "b"), []byte("hello"), 0o644); err != nil {
			return err
		}
		m.Rootfs = &Rootfs{Image: "a.img", Suite: "fake"}
		return nil
	}
}

func TestEntryReuseAndRebuild(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var calls atomic.Int32
	build := fakeBuild(&calls, 0)
	get := func() string {
		t.Helper()
		// A fresh Cache each time: a Cache hashes an entry only once.
		c, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		e, m, err := c.entry(ctx, "rootfs", "k1", nil, build)
		if err != nil {
			t.Fatal(err)
		}
		if m.Rootfs == nil || m.Rootfs.Image != "a.img" || len(m.Files) != 2 {
			t.Fatalf("manifest %+v", m)
		}
		return e
	}
	e := get()
	if calls.Load() != 1 {
		t.Fatalf("builds %d, want 1", calls.Load())
	}
	if err := VerifyEntry(e); err != nil {
		t.Fatal(err)
	}
	get()
	if calls.Load() != 1 {
		t.Fatalf("second call built again (%d builds)", calls.Load())
	}

	img := filepath.Join(e, "a.img")
	for _, tc := range []struct {
		name    string
		corrupt func() error
	}{
		{"truncated file", func() error { return os.Truncate(img, 3) }},
		{"flipped byte", func() error {
			b, _ := os.ReadFile(img)
			b[5] ^= 0x40
			return os.WriteFile(img, b, 0o644)
		}},
		{"deleted manifest", func() error { return os.Remove(filepath.Join(e, manifestName)) }},
		{"deleted file", func() error { return os.Remove(filepath.Join(e, "sub", "b")) }},
		{"garbage manifest", func() error { return os.WriteFile(filepath.Join(e, manifestName), []byte("{"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			if err := tc.corrupt(); err != nil {
				t.Fatal(err)
			}
			var ce *CorruptError
			if err := VerifyEntry(e); !errors.As(err, &ce) {
				t.Fatalf("VerifyEntry after corruption = %v, want *CorruptError", err)
			}
			get()
			if calls.Load() != before+1 {
				t.Errorf("corrupt entry not rebuilt (builds %d → %d)", before, calls.Load())
			}
			if err := VerifyEntry(e); err != nil {
				t.Errorf("rebuilt entry does not verify: %v", err)
			}
		})
	}
}

func TestEntryBuildFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, _ := New(dir)
	_, _, err := c.entry(context.Background(), "kernels", "k", nil, func(ctx context.Context, tmp string, m *manifest) error {
		_ = os.WriteFile(filepath.Join(tmp, "half"), []byte("x"), 0o644)
		return errors.New("boom")
	})
	if err == nil || err.Error() != "boom" {
		t.Fatalf("error %v, want boom", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "kernels", "*"))
	for _, l := range left {
		if filepath.Ext(l) != ".lock" {
			t.Errorf("left behind: %s", l)
		}
	}
}

func TestEntryStalePartialRemoved(t *testing.T) {
	dir := t.TempDir()
	c, _ := New(dir)
	// A crashed builder's temp dir and a half-renamed entry without manifest.
	stale := filepath.Join(dir, "rootfs", ".tmp-k-123")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "k"), 0o755); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	if _, _, err := c.entry(context.Background(), "rootfs", "k", nil, fakeBuild(&calls, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp dir still there: %v", err)
	}
	if s := c.Stats(); s.Rebuilds != 1 {
		t.Errorf("stats %+v, want one rebuild", s)
	}
}

func TestEntryConcurrentBuildersSerialise(t *testing.T) {
	dir := t.TempDir()
	var calls atomic.Int32
	build := fakeBuild(&calls, 300*time.Millisecond)
	var wg sync.WaitGroup
	caches := make([]*Cache, 4)
	for i := range caches {
		c, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		caches[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := c.entry(context.Background(), "rootfs", "shared", nil, build); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("%d builds, want 1", calls.Load())
	}
	var reuses int64
	for _, c := range caches {
		reuses += c.Stats().Reuses
	}
	if reuses != 3 {
		t.Errorf("%d reuses, want 3", reuses)
	}
}

func TestLockFileHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	unlock, err := LockFile(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := LockFile(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock: %v, want deadline exceeded", err)
	}
}
