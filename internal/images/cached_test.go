package images

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/matrix"
)

// fakeKernelEntry writes a complete kernel entry as debianKernel would.
func fakeKernelEntry(t *testing.T, cache, key, suite, pkg, version string) {
	t.Helper()
	dir := filepath.Join(cache, "kernels", key)
	if err := os.MkdirAll(filepath.Join(dir, "root", "lib", "modules", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "config", "modules.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest{Kind: "kernels", Inputs: map[string]string{"suite": suite, "package": pkg},
		Kernel: &Kernel{Release: pkg[len("linux-image-"):], Version: version, Package: pkg, Vmlinuz: "vmlinuz",
			ModulesDir: "root/lib/modules/x", ModulesImage: "modules.ext4", Config: "config"}}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // Created orders the entries
}

func TestCachedKernel(t *testing.T) {
	cache := t.TempDir()
	fakeKernelEntry(t, cache, "a", "bookworm", "linux-image-6.1.0-28-amd64", "6.1.119")
	fakeKernelEntry(t, cache, "b", "bookworm", "linux-image-6.1.0-57-amd64", "6.1.192")
	fakeKernelEntry(t, cache, "c", "bookworm", "linux-image-6.1.0-57-cloud-amd64", "6.1.192")
	fakeKernelEntry(t, cache, "d", "trixie", "linux-image-6.12.118+deb13-amd64", "6.12.118")
	fakeKernelEntry(t, cache, "e", "bookworm-backports", "linux-image-6.12.43+bpo-amd64-unsigned", "6.12.43")
	fakeKernelEntry(t, cache, "f", "bullseye", "linux-image-5.10.0-46-amd64", "5.10.262")
	if err := os.WriteFile(filepath.Join(cache, "kernels", "f", "config"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref  matrix.KernelRef
		want string // release, "" for none
	}{
		{matrix.KernelRef{Version: "6.1", Suite: "bookworm"}, "6.1.0-57-amd64"}, // the last imported, not the cloud flavour
		{matrix.KernelRef{Version: "6.1", Suite: "bookworm", Package: "linux-image-cloud-amd64"}, "6.1.0-57-cloud-amd64"},
		{matrix.KernelRef{Version: "6.1", Suite: "bookworm", Package: "linux-image-6.1.0-28-amd64"}, "6.1.0-28-amd64"},
		{matrix.KernelRef{Version: "6.1.119", Suite: "bookworm"}, "6.1.0-28-amd64"},
		{matrix.KernelRef{Version: "6.12", Suite: "trixie"}, "6.12.118+deb13-amd64"},
		{matrix.KernelRef{Version: "6.12", Suite: "bookworm-backports"}, "6.12.43+bpo-amd64-unsigned"},
		{matrix.KernelRef{Version: "6.12", Suite: "bookworm"}, ""},
		{matrix.KernelRef{Version: "5.10", Suite: "bullseye"}, ""}, // its entry does not match its manifest
		{matrix.KernelRef{Version: "6.1", Suite: "bookworm", Vmlinuz: "/boot/vmlinuz"}, ""},
	}
	for _, tc := range tests {
		k, err := CachedKernel(cache, tc.ref)
		got := ""
		if k != nil {
			got = k.Release
			if k.Config != filepath.Join(cache, "kernels", filepath.Base(filepath.Dir(k.Config)), "config") {
				t.Errorf("%+v: config path %s is not absolute in its entry", tc.ref, k.Config)
			}
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
	if k, err := CachedKernel(filepath.Join(cache, "none"), matrix.KernelRef{Version: "6.1", Suite: "bookworm"}); k != nil || err != nil {
		t.Errorf("no cache dir: %v, %v", k, err)
	}
}
