package qemu

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

const fakeDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/crypto/crc32c_generic.ko:
`

// fakeKernel writes a module tree with modules.dep and a builtin virtio_pci.
func fakeKernel(t *testing.T, dep string) *images.Kernel {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio_pci.ko\n"), 0o644)
	sc := bufio.NewScanner(strings.NewReader(dep))
	for sc.Scan() {
		mod, _, _ := strings.Cut(sc.Text(), ":")
		p := filepath.Join(dir, mod)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("fake module "+mod), 0o644)
	}
	return &images.Kernel{Release: "6.1.0-test", ModulesDir: dir}
}

func TestModuleClosureOrder(t *testing.T) {
	k := fakeKernel(t, fakeDep)
	idx, err := loadModuleIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := idx.closure()
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m]; dup {
			t.Errorf("%s listed twice in %v", m, order)
		}
		pos[m] = i
	}
	for mod, deps := range idx.deps {
		if _, ok := pos[mod]; !ok {
			continue
		}
		for _, d := range deps {
			if pos[d] > pos[mod] {
				t.Errorf("%s loads before its dependency %s: %v", mod, d, order)
			}
		}
	}
	for _, want := range []string{"virtio_blk", "virtio_net", "ext4", "jbd2", "crc32c_generic"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("closure %v lacks %s", order, want)
		}
	}
	if slices.Contains(order, "virtio_pci") {
		t.Errorf("built-in virtio_pci in closure %v", order)
	}
}

func TestModuleClosureMissing(t *testing.T) {
	k := fakeKernel(t, strings.ReplaceAll(fakeDep, "kernel/drivers/block/virtio_blk.ko:", "kernel/drivers/block/other.ko:"))
	idx, err := loadModuleIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.closure(); err == nil || !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("closure without virtio_blk: %v, want an error naming it", err)
	}
	cyc := fakeKernel(t, fakeDep+"kernel/a/virtio_blk.ko: kernel/b/x.ko\nkernel/b/x.ko: kernel/a/virtio_blk.ko\n")
	idx, err = loadModuleIndex(cyc.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.closure(); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cyclic deps: %v, want a cycle error", err)
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	if _, _, err := parseModulesDep(strings.NewReader("kernel/a.ko: x.ko\nno colon here\n")); err == nil || !strings.Contains(err.Error(), "modules.dep:2") {
		t.Errorf("got %v, want an error at modules.dep:2", err)
	}
}

func TestInitramfsCpio(t *testing.T) {
	testutil.RequiresBinary(t, "cpio")
	k := fakeKernel(t, fakeDep)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("#!/bin/false\n"), 0o755)
	cache := t.TempDir()
	p, err := Initramfs(k, agent, cache)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Initramfs(k, agent, cache)
	if err != nil || p2 != p {
		t.Errorf("second call: %s, %v; want the cached %s", p2, err, p)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	list := string(out)
	for _, want := range []string{" init", " dev/console", " mx/modules/order", " mx/modules/ext4.ko", " mx/modules/virtio_blk.ko"} {
		if !strings.Contains(list, want) {
			t.Errorf("initramfs lacks %q:\n%s", want, list)
		}
	}
	if !strings.Contains(list, "crw-------") {
		t.Errorf("dev/console is not a char device:\n%s", list)
	}
	// A different agent is a different initramfs.
	os.WriteFile(agent, []byte("#!/bin/true\n"), 0o755)
	if p3, err := Initramfs(k, agent, cache); err != nil || p3 == p {
		t.Errorf("changed agent: %s, %v; want a new initramfs", p3, err)
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add(fakeDep)
	f.Add("a.ko:\nb.ko: a.ko\n")
	f.Fuzz(func(t *testing.T, s string) {
		paths, deps, err := parseModulesDep(strings.NewReader(s))
		if err != nil {
			return
		}
		for name := range deps {
			if _, ok := paths[name]; !ok {
				t.Fatalf("deps for %q without a path", name)
			}
		}
		idx := &moduleIndex{path: paths, deps: deps, builtin: map[string]bool{}}
		idx.closure() // must not panic or loop on cycles
	})
}
