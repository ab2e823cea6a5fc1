package images

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner/testutil"
)

// testCacheDir is MATRIXCTL_CACHE when set (CI shares downloads between
// packages within a run), else a reusable dir under os.TempDir().
func testCacheDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MATRIXCTL_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "matrixctl-test-cache")
}

// logWriter sends progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func integrationCache(t *testing.T, opts ...Option) *Cache {
	t.Helper()
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresBinary(t, "apt-get", "dpkg-deb", "depmod", "mkfs.ext4", "xz")
	c, err := New(testCacheDir(t), append([]Option{WithProgress(logWriter{t})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkKernel asserts what the VM needs from an imported kernel.
func checkKernel(t *testing.T, k *Kernel, line string) {
	t.Helper()
	if !MatchesLine(line, k.Version) || !strings.HasPrefix(k.Release, line+".") {
		t.Errorf("kernel %s version %s, want line %s", k.Release, k.Version, line)
	}
	if banner, err := KernelBanner(k.Vmlinuz); err != nil || !strings.HasPrefix(banner, k.Release+" ") {
		t.Errorf("vmlinuz banner %q (%v), want release %s", banner, err, k.Release)
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err != nil {
		t.Errorf("modules.dep: %v", err)
	}
	for _, mod := range []string{"virtio_blk", "overlay", "ext4", "xfs", "btrfs", "dm_thin_pool"} {
		if !k.HasModule(mod) {
			t.Errorf("kernel %s lacks module %s", k.Release, mod)
		}
	}
	if k.HasModule("aufs") {
		t.Errorf("kernel %s claims aufs, no Debian kernel has it", k.Release)
	}
	deps, err := k.ModuleDeps("overlay")
	if err != nil || len(deps) == 0 || !strings.HasSuffix(deps[len(deps)-1], "/overlay.ko") {
		t.Errorf("ModuleDeps(overlay) = %v, %v; want .../overlay.ko last", deps, err)
	}
	compressed := 0
	plain := 0
	_ = filepath.WalkDir(k.ModulesDir, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case strings.HasSuffix(p, ".ko"):
			plain++
		case strings.Contains(p, ".ko."):
			compressed++
		}
		return nil
	})
	if compressed != 0 || plain < 1000 {
		t.Errorf("module tree: %d plain .ko, %d compressed; want >1000 plain, 0 compressed", plain, compressed)
	}
	cfg, err := k.ConfigMap()
	if err != nil {
		t.Fatal(err)
	}
	if cfg["CONFIG_OVERLAY_FS"] != "m" || cfg["CONFIG_EXT4_FS"] == "" {
		t.Errorf("config: CONFIG_OVERLAY_FS=%q CONFIG_EXT4_FS=%q", cfg["CONFIG_OVERLAY_FS"], cfg["CONFIG_EXT4_FS"])
	}
	if st, err := os.Stat(k.ModulesImage); err != nil || st.Size() < 10<<20 {
		t.Errorf("modules image: %v", err)
	}
	if _, err := run(context.Background(), command{argv: []string{"e2fsck", "-fn", k.ModulesImage}}); err != nil {
		t.Errorf("modules image does not fsck clean: %v", err)
	}
	out, err := run(context.Background(), command{argv: []string{"debugfs", "-R", "stat /modules.dep", k.ModulesImage}})
	if err != nil || !strings.Contains(out, "Type: regular") {
		t.Errorf("modules image has no /modules.dep: %v\n%s", err, out)
	}
}

func TestIntegrationKernelBookworm(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ref := matrix.KernelRef{Version: "6.1", Suite: "bookworm"}
	start := time.Now()
	k, err := c.Kernel(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first call %v: %+v stats %+v", time.Since(start), k, c.Stats())
	checkKernel(t, k, "6.1")

	before := c.Stats()
	start = time.Now()
	k2, err := c.Kernel(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	t.Logf("second call %v: stats %+v", time.Since(start), after)
	if *k2 != *k {
		t.Errorf("second call returned %+v, want %+v", k2, k)
	}
	if after.Downloads != before.Downloads || after.KernelBuilds != before.KernelBuilds || after.AptUpdates != before.AptUpdates {
		t.Errorf("second call did work: before %+v after %+v", before, after)
	}
	testutil.NoProcessesLeft(t, c.Dir())
}

func TestIntegrationRootfsBookworm(t *testing.T) {
	c := integrationCache(t)
	testutil.RequiresBinary(t, "mmdebstrap", "debugfs", "e2fsck")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	distro := matrix.DistroRef{Name: "debian12", Suite: "bookworm"}
	docker := matrix.DockerRef{Version: "20.10.24"}
	var progress strings.Builder
	start := time.Now()
	r, err := c.Rootfs(ctx, distro, docker, io.MultiWriter(&progress, logWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first call %v: %+v", time.Since(start), r)
	if UpstreamVersion(r.DockerPackageVersion) != "20.10.24" || r.Suite != "bookworm" {
		t.Errorf("rootfs %+v, want docker 20.10.24 from bookworm", r)
	}
	if _, err := run(ctx, command{argv: []string{"e2fsck", "-fn", r.Image}}); err != nil {
		t.Errorf("rootfs image does not fsck clean: %v", err)
	}
	for _, p := range []string{"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/sbin/runc", "/usr/sbin/mkfs.xfs",
		"/usr/sbin/mkfs.btrfs", "/usr/sbin/lvcreate", "/usr/sbin/thin_check", "/usr/sbin/iptables", "/usr/bin/mount", "/usr/sbin/modprobe"} {
		out, err := run(ctx, command{argv: []string{"debugfs", "-R", "stat " + p, r.Image}})
		if err != nil || !strings.Contains(out, "Type: ") || strings.Contains(out, "File not found") {
			t.Errorf("rootfs lacks %s: %v %s", p, err, out)
		}
	}
	out, _ := run(ctx, command{argv: []string{"debugfs", "-R", "ls /usr/share/man", r.Image}})
	if !strings.Contains(out, "File not found") && strings.Count(out, "man") > 3 {
		t.Errorf("man pages were not dropped: %s", out)
	}
	if r.Packages != "" {
		b, _ := os.ReadFile(r.Packages)
		if !strings.Contains(string(b), "docker.io "+r.DockerPackageVersion) {
			t.Errorf("packages.txt lacks docker.io %s", r.DockerPackageVersion)
		}
	}

	before := c.Stats()
	r2, err := c.Rootfs(ctx, distro, docker, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := c.Stats()
	if *r2 != *r || after.RootfsBuilds != before.RootfsBuilds || after.Reuses != before.Reuses+1 {
		t.Errorf("second call: %+v stats %+v → %+v; want the same rootfs and no build", r2, before, after)
	}
	testutil.NoProcessesLeft(t, c.Dir())
	if m, _ := mountsUnder(c.Dir()); len(m) > 0 {
		t.Errorf("mounts left under the cache: %v", m)
	}
}
