package images

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestKernelFlavour(t *testing.T) {
	for name, want := range map[string]bool{
		"linux-image-6.1.0-47-amd64":               true,
		"linux-image-6.1.0-57-amd64":               true,
		"linux-image-6.12.43+deb13-amd64":          false, // another line
		"linux-image-6.1.0-47-amd64-unsigned":      false,
		"linux-image-6.1.0-47-amd64-dbg":           false,
		"linux-image-6.1.0-47-cloud-amd64":         true, // matched here, dropped by name check
		"linux-image-6.10.0-1-amd64":               false,
		"linux-image-amd64":                        false,
		"linux-image-6.1.0-47-amd64 ; rm -rf /tmp": false,
	} {
		if got := kernelFlavour("6.1").MatchString(name); got != want {
			t.Errorf("%s: match %v, want %v", name, got, want)
		}
	}
	if !kernelFlavour("6.12").MatchString("linux-image-6.12.43+deb13-amd64") {
		t.Error("trixie's 6.12 naming not matched")
	}
}

// TestSortReleases: Debian version rules, not string order (6.1.99 < 6.1.153).
func TestSortReleases(t *testing.T) {
	ks := []Release{
		{Package: "c", Version: "6.1.153-1"},
		{Package: "a", Version: "6.1.99-1"},
		{Package: "b", Version: "6.1.135-1~deb12u1"},
		{Package: "d", Version: "6.1.135-1"},
	}
	if err := SortReleases(ks); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range ks {
		got = append(got, k.Package)
	}
	if want := []string{"a", "b", "d", "c"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if err := SortReleases([]Release{{Package: "x", Version: "not a version!"}}); err == nil {
		t.Error("bad version accepted")
	}
}

// TestIntegrationKernelPackages lists bookworm's 6.1 line from the mirror
// the host's apt configuration names.
func TestIntegrationKernelPackages(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ks, err := c.KernelPackages(ctx, "6.1", "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d packages: first %+v, last %+v", len(ks), ks[0], ks[len(ks)-1])
	if len(ks) < 2 {
		t.Fatalf("bookworm offers %d 6.1 kernels, want several: %+v", len(ks), ks)
	}
	for _, k := range ks {
		if !MatchesLine("6.1", k.Upstream()) || k.Suite != "bookworm" {
			t.Errorf("%+v is not a bookworm 6.1 kernel", k)
		}
	}
	noChildrenLeft(t, c)
}

// TestIntegrationPackageReleases lists bullseye's docker.io builds (main
// and security carry different ones).
func TestIntegrationPackageReleases(t *testing.T) {
	c := integrationCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rs, err := c.PackageReleases(ctx, "docker.io", "bullseye")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rs)
	if len(rs) == 0 || UpstreamVersion(rs[0].Version) != "20.10.5" {
		t.Errorf("bullseye docker.io builds %+v, want 20.10.5 ones", rs)
	}
	if err := SortReleases(slices.Clone(rs)); err != nil {
		t.Error(err)
	}
	noChildrenLeft(t, c)
}
