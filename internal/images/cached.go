package images

import (
	"errors"
	"path/filepath"
	"regexp"

	"github.com/matrixctl/matrixctl/matrix"
)

// CachedKernel finds a Debian kernel for ref already imported into the
// cache directory dir, without downloading anything or asking the suite
// for its current package (for matrixctl plan): an entry imported from
// ref's suite, of ref's package (a versioned package by name; a
// metapackage such as the default linux-image-amd64 by its flavour), whose
// upstream version belongs to ref's release line. Of several, the one
// imported last; `run` may resolve a newer one. Entries whose files do not
// match their manifest are skipped. nil and no error: none is cached (local
// and box kernels are never looked up here).
func CachedKernel(dir string, ref matrix.KernelRef) (*Kernel, error) {
	if ref.Suite == "" || ref.Vmlinuz != "" || ref.Modules != "" {
		return nil, nil
	}
	pkg := ref.Package
	if pkg == "" {
		pkg = DefaultKernelPackage
	}
	want := func(p string) bool { return p == pkg }
	if !versionedKernel.MatchString(pkg) {
		flavour := regexp.MustCompile(`^linux-image-[0-9][0-9.]*(-[0-9]+)?(\+[a-z0-9.~]+)?-` + regexp.QuoteMeta(pkg[len("linux-image-"):]) + `(-unsigned)?$`)
		want = flavour.MatchString
	}
	entries, err := filepath.Glob(filepath.Join(dir, "kernels", "*", manifestName))
	if err != nil {
		return nil, err
	}
	var best *manifest
	var bestDir string
	for _, e := range entries {
		m, err := verifyEntry(filepath.Dir(e), false)
		var ce *CorruptError
		switch {
		case errors.As(err, &ce):
			continue // partial or damaged: `run` rebuilds it
		case err != nil:
			return nil, err
		}
		if m.Kernel == nil || m.Inputs["suite"] != ref.Suite || !want(m.Inputs["package"]) || !MatchesLine(ref.Version, m.Kernel.Version) {
			continue
		}
		if best == nil || m.Created.After(best.Created) {
			best, bestDir = m, filepath.Dir(e)
		}
	}
	if best == nil {
		return nil, nil
	}
	return kernelFrom(bestDir, best)
}
