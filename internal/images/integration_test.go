package images

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

func integrationCache(t *testing.T, opts ...Option) *Cache {
	t.Helper()
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresBinary(t, "apt-get", "dpkg-deb", "depmod", "mkfs.ext4", "xz")
	c, err := New(testutil.CacheDir(), append([]Option{WithProgress(testutil.LogWriter(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noChildrenLeft asserts that no tool this package ran on the cache (apt,
// builds in temp dirs) still runs. Other packages' VMs may legitimately use
// the shared cache's entries, so the marker is not the whole cache dir.
func noChildrenLeft(t *testing.T, c *Cache) {
	t.Helper()
	testutil.NoProcessesLeft(t, filepath.Join(c.Dir(), "apt")+"/")
	testutil.NoProcessesLeft(t, filepath.Join(c.Dir(), "kernels", ".tmp-"))
	testutil.NoProcessesLeft(t, filepath.Join(c.Dir(), "rootfs", ".tmp-"))
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
	if _, err := run(context.Background(), proc.Cmd{Argv: []string{"e2fsck", "-fn", k.ModulesImage}}); err != nil {
		t.Errorf("modules image does not fsck clean: %v", err)
	}
	out, err := run(context.Background(), proc.Cmd{Argv: []string{"debugfs", "-R", "stat /modules.dep", k.ModulesImage}})
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
	noChildrenLeft(t, c)
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
	r, err := c.Rootfs(ctx, distro, docker, io.MultiWriter(&progress, testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first call %v: %+v", time.Since(start), r)
	if UpstreamVersion(r.DockerPackageVersion) != "20.10.24" || r.Suite != "bookworm" {
		t.Errorf("rootfs %+v, want docker 20.10.24 from bookworm", r)
	}
	if _, err := run(ctx, proc.Cmd{Argv: []string{"e2fsck", "-fn", r.Image}}); err != nil {
		t.Errorf("rootfs image does not fsck clean: %v", err)
	}
	for _, p := range []string{"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/sbin/runc", "/usr/sbin/mkfs.xfs",
		"/usr/sbin/mkfs.btrfs", "/usr/sbin/lvcreate", "/usr/sbin/thin_check", "/usr/sbin/iptables", "/usr/bin/mount", "/usr/sbin/modprobe"} {
		out, err := run(ctx, proc.Cmd{Argv: []string{"debugfs", "-R", "stat " + p, r.Image}})
		if err != nil || !strings.Contains(out, "Type: ") || strings.Contains(out, "File not found") {
			t.Errorf("rootfs lacks %s: %v %s", p, err, out)
		}
	}
	out, _ := run(ctx, proc.Cmd{Argv: []string{"debugfs", "-R", "ls /usr/share/man", r.Image}})
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
	if !reflect.DeepEqual(r2, r) || after.RootfsBuilds != before.RootfsBuilds || after.Reuses != before.Reuses+1 {
		t.Errorf("second call: %+v stats %+v → %+v; want the same rootfs and no build", r2, before, after)
	}
	// The exact Debian version of that build (as a bisection step names it)
	// is the same rootfs.
	r3, err := c.Rootfs(ctx, distro, matrix.DockerRef{Version: r.DockerPackageVersion}, nil)
	if err != nil || r3.Image != r.Image || c.Stats().RootfsBuilds != before.RootfsBuilds {
		t.Errorf("exact version %s: %+v, %v; want %s without a build", r.DockerPackageVersion, r3, err, r.Image)
	}
	noChildrenLeft(t, c)
	if m, _ := mountsUnder(c.Dir()); len(m) > 0 {
		t.Errorf("mounts left under the cache: %v", m)
	}
}

// TestIntegrationKernelTrixie imports 6.12 from trixie: xz-compressed
// modules under /usr/lib/modules (merged /usr).
func TestIntegrationKernelTrixie(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := c.Kernel(ctx, matrix.KernelRef{Version: "6.12", Suite: "trixie"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v stats %+v", k, c.Stats())
	checkKernel(t, k, "6.12")
	if !k.HasModule("virtio_pci") {
		t.Errorf("virtio_pci (built in on 6.12) not found")
	}
	if deps, err := k.ModuleDeps("virtio_pci"); err != nil || len(deps) != 0 {
		t.Errorf("ModuleDeps(virtio_pci) = %v, %v; want built-in (no files)", deps, err)
	}
}

func TestIntegrationKernelWrongLine(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := c.Kernel(ctx, matrix.KernelRef{Version: "5.10", Suite: "bookworm"})
	var pe *PackageError
	if !errors.As(err, &pe) || !errors.Is(err, ErrNotFound) || pe.Suite != "bookworm" || len(pe.Have) != 1 ||
		!strings.HasPrefix(pe.Have[0], "6.1.") {
		t.Fatalf("error %v, want a PackageError saying bookworm has 6.1.x", err)
	}
	t.Log(err)
}

func TestIntegrationRootfsDockerMissing(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := c.Stats()
	_, err := c.Rootfs(ctx, matrix.DistroRef{Name: "debian13", Suite: "trixie"}, matrix.DockerRef{Version: "20.10.24"}, nil)
	var pe *PackageError
	if !errors.As(err, &pe) || pe.Package != "docker.io" || pe.Want != "20.10.24" || len(pe.Have) == 0 {
		t.Fatalf("error %v, want suite trixie has no package docker.io version 20.10.24", err)
	}
	if !strings.Contains(err.Error(), "suite trixie has no package docker.io version 20.10.24 (it has ") {
		t.Errorf("message %q", err)
	}
	if s := c.Stats(); s.RootfsBuilds != before.RootfsBuilds {
		t.Errorf("a build ran for a missing version")
	}
	t.Log(err)
}

func TestIntegrationMirrorUnreachable(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresBinary(t, "apt-get")
	// A loopback port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New(t.TempDir(), WithMirrors("http://"+addr+"/debian", "http://"+addr+"/debian-security"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = c.Kernel(ctx, matrix.KernelRef{Version: "6.1", Suite: "bookworm"})
	var me *MirrorError
	var ee *proc.Error
	if !errors.As(err, &me) || me.Missing || !errors.As(err, &ee) || ee.ExitCode <= 0 {
		t.Fatalf("error %v, want *MirrorError (unreachable) wrapping apt-get's *proc.Error", err)
	}
	if !strings.Contains(err.Error(), "mirror http://"+addr+"/debian unreachable: ") || !strings.Contains(err.Error(), "apt-get") {
		t.Errorf("message %q", err)
	}
	t.Log(err)
}

// TestIntegrationKernelLocal imports the bookworm kernel again as "local
// files" laid out like an unpacked package, with some modules compressed.
func TestIntegrationKernelLocal(t *testing.T) {
	shared := integrationCache(t)
	testutil.RequiresBinary(t, "zstd")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	deb, err := shared.Kernel(ctx, matrix.KernelRef{Version: "6.1", Suite: "bookworm"})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	rel := deb.Release
	for _, argv := range [][]string{
		{"mkdir", "-p", src + "/boot", src + "/lib/modules"},
		{"cp", deb.Vmlinuz, src + "/boot/vmlinuz-" + rel},
		{"cp", deb.Config, src + "/boot/config-" + rel},
		{"cp", "-a", deb.ModulesDir, src + "/lib/modules/" + rel},
		{"sh", "-c", "rm " + src + "/lib/modules/" + rel + "/modules.dep*"},
		{"sh", "-c", "xz " + src + "/lib/modules/" + rel + "/kernel/fs/overlayfs/overlay.ko"},
		{"sh", "-c", "zstd -q --rm " + src + "/lib/modules/" + rel + "/kernel/drivers/block/virtio_blk.ko"},
	} {
		if _, err := run(ctx, proc.Cmd{Argv: argv}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(t.TempDir(), WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ref := matrix.KernelRef{Version: "6.1", Vmlinuz: src + "/boot/vmlinuz-" + rel, Modules: src}
	k, err := c.Kernel(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkKernel(t, k, "6.1")
	if k.Release != rel || k.Version != deb.Version || k.Package != "" {
		t.Errorf("local kernel %+v, want release %s version %s", k, rel, deb.Version)
	}
	if _, err := c.Kernel(ctx, ref); err != nil || c.Stats().KernelBuilds != 1 || c.Stats().Reuses != 1 {
		t.Errorf("second import: %v, stats %+v", err, c.Stats())
	}
	// The release directory itself is accepted too.
	if _, err := c.Kernel(ctx, matrix.KernelRef{Version: "6.1", Vmlinuz: ref.Vmlinuz, Modules: src + "/lib/modules/" + rel}); err != nil {
		t.Errorf("modules given as the release dir: %v", err)
	}
	if _, err := c.Kernel(ctx, matrix.KernelRef{Version: "5.10", Vmlinuz: ref.Vmlinuz, Modules: src}); err == nil ||
		!strings.Contains(err.Error(), "not 5.10") {
		t.Errorf("wrong line: %v", err)
	}

	// A flipped byte in the modules image: the next Cache on the same dir
	// detects it and rebuilds the entry. (This cache is private to the test:
	// entries in the shared cache may be in use by running VMs.)
	flipByte(t, k.ModulesImage, 4096*100)
	var ce *CorruptError
	if err := VerifyEntry(filepath.Dir(k.ModulesImage)); !errors.As(err, &ce) {
		t.Fatalf("flipped byte: VerifyEntry = %v, want *CorruptError", err)
	}
	c2, err := New(c.Dir(), WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c2.Kernel(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if s := c2.Stats(); s.Rebuilds != 1 || s.KernelBuilds != 1 {
		t.Errorf("stats %+v, want one rebuild", s)
	}
	if err := VerifyEntry(filepath.Dir(k2.ModulesImage)); err != nil {
		t.Errorf("rebuilt entry: %v", err)
	}
	checkKernel(t, k2, "6.1")
	testutil.NoProcessesLeft(t, c.Dir())
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
