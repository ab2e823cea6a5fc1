package images

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/internal/kconfig"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/matrix"
)

// DefaultKernelPackage is the package a Debian kernel ref resolves when it names none.
const DefaultKernelPackage = "linux-image-amd64"

// versionedKernel matches the package names that contain a kernel image
// (linux-image-6.1.0-28-amd64, linux-image-6.12.43+deb13-amd64-unsigned), as
// opposed to metapackages (linux-image-amd64, linux-image-cloud-amd64).
var versionedKernel = regexp.MustCompile(`^linux-image-[0-9]+\.[0-9]+`)

// Kernel resolves ref to an imported kernel: a Debian linux-image package
// from ref.Suite (ref.Package, default linux-image-amd64, followed from the
// metapackage to the versioned package), or local files (ref.Vmlinuz and
// ref.Modules). The kernel's upstream version must belong to ref.Version's
// release line. A *PackageError says the suite has no such kernel, a
// *MirrorError that the mirror failed, an *proc.Error that a tool failed.
func (c *Cache) Kernel(ctx context.Context, ref matrix.KernelRef) (*Kernel, error) {
	var k *Kernel
	var err error
	switch {
	case ref.Vmlinuz != "" || ref.Modules != "":
		k, err = c.localKernel(ctx, ref)
	case ref.Suite != "":
		k, err = c.debianKernel(ctx, ref)
	case ref.Box != "":
		err = errors.New("kernels from Vagrant boxes are not imported here")
	default:
		err = errors.New("kernel ref names neither a suite nor local files")
	}
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", describeKernelRef(ref), err)
	}
	return k, nil
}

func describeKernelRef(ref matrix.KernelRef) string {
	switch {
	case ref.Vmlinuz != "" || ref.Modules != "":
		return fmt.Sprintf("%s (local %s)", ref.Version, ref.Vmlinuz)
	case ref.Suite != "":
		pkg := ref.Package
		if pkg == "" {
			pkg = DefaultKernelPackage
		}
		return fmt.Sprintf("%s (%s from %s)", ref.Version, pkg, ref.Suite)
	}
	return ref.Version
}

// resolveKernelPackage follows metapackages to the package holding the image.
func resolveKernelPackage(ctx context.Context, a *aptEnv, pkg string) (pkgRecord, error) {
	name := pkg
	for range 4 {
		recs, err := a.show(ctx, name, false)
		if err != nil {
			return pkgRecord{}, err
		}
		rec := recs[0]
		if versionedKernel.MatchString(rec.Package) {
			return rec, nil
		}
		next := ""
		for _, dep := range strings.Split(rec.Depends, ",") {
			alt, _, _ := strings.Cut(dep, "|")
			n := strings.TrimSpace(alt)
			if i := strings.IndexAny(n, " (:"); i >= 0 {
				n = n[:i]
			}
			if strings.HasPrefix(n, "linux-image-") {
				next = n
				break
			}
		}
		if next == "" {
			return pkgRecord{}, fmt.Errorf("package %s %s neither holds a kernel nor depends on a linux-image package", rec.Package, rec.Version)
		}
		name = next
	}
	return pkgRecord{}, fmt.Errorf("package %s: too many metapackage levels", pkg)
}

func (c *Cache) debianKernel(ctx context.Context, ref matrix.KernelRef) (*Kernel, error) {
	a, err := c.aptFor(ctx, ref.Suite)
	if err != nil {
		return nil, err
	}
	pkg := ref.Package
	if pkg == "" {
		pkg = DefaultKernelPackage
	}
	rec, err := resolveKernelPackage(ctx, a, pkg)
	if err != nil {
		return nil, err
	}
	upstream := UpstreamVersion(rec.Version)
	if !MatchesLine(ref.Version, upstream) {
		return nil, &PackageError{Suite: ref.Suite, Package: pkg, Want: ref.Version,
			Have: []string{upstream + " (" + rec.Package + " " + rec.Version + ")"}}
	}
	release := strings.TrimSuffix(strings.TrimPrefix(rec.Package, "linux-image-"), "-unsigned")
	key := keyOf("kernel-deb", rec.Filename, rec.SHA256)
	inputs := map[string]string{"suite": ref.Suite, "package": rec.Package, "version": rec.Version,
		"filename": rec.Filename, "sha256": rec.SHA256}
	dir, m, err := c.entry(ctx, "kernels", key, inputs, func(ctx context.Context, tmp string, m *manifest) error {
		c.progressf("kernel: downloading %s %s from %s\n", rec.Package, rec.Version, ref.Suite)
		dl := filepath.Join(tmp, "download")
		if err := os.Mkdir(dl, 0o755); err != nil {
			return err
		}
		t := time.Now()
		deb, err := a.download(ctx, rec, dl)
		if err != nil {
			return err
		}
		c.progressf("kernel: downloaded %s in %s\n", filepath.Base(deb), since(t))
		x := filepath.Join(tmp, "extract")
		t = time.Now()
		if _, err := run(ctx, proc.Cmd{Argv: []string{"dpkg-deb", "-x", deb, x}}); err != nil {
			return err
		}
		c.progressf("kernel: extracted in %s\n", since(t))
		modDir, rel, err := findModuleTree(x, release)
		if err != nil {
			return err
		}
		k := &Kernel{Release: rel, Version: upstream, Package: rec.Package, PackageVersion: rec.Version}
		err = c.assemble(ctx, tmp, k, assembleSrc{
			vmlinuz: filepath.Join(x, "boot", "vmlinuz-"+rel),
			config:  filepath.Join(x, "boot", "config-"+rel),
			modules: modDir,
			move:    true,
		})
		if err != nil {
			return err
		}
		m.Kernel = k
		if err := os.RemoveAll(x); err != nil {
			return err
		}
		return os.RemoveAll(dl)
	})
	if err != nil {
		return nil, err
	}
	return kernelFrom(dir, m)
}

// findModuleTree finds <root>/lib/modules/<release> or the merged-/usr
// <root>/usr/lib/modules/<release>. When release is empty or absent and
// exactly one release exists, that one is used.
func findModuleTree(root, release string) (string, string, error) {
	var found []string
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		base := filepath.Join(root, d)
		if release != "" {
			if st, err := os.Stat(filepath.Join(base, release)); err == nil && st.IsDir() {
				return filepath.Join(base, release), release, nil
			}
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.IsDir() {
				found = append(found, filepath.Join(base, e.Name()))
			}
		}
	}
	if len(found) == 1 {
		return found[0], filepath.Base(found[0]), nil
	}
	if len(found) == 0 {
		return "", "", fmt.Errorf("%s: no lib/modules/<release> or usr/lib/modules/<release>", root)
	}
	return "", "", fmt.Errorf("%s: several module trees (%s), none for release %q", root, strings.Join(found, ", "), release)
}

// assembleSrc says where the parts of a kernel come from.
type assembleSrc struct {
	vmlinuz, config, modules string
	move                     bool // rename modules instead of copying
}

// assemble lays out a kernel entry in tmp: vmlinuz, config,
// root/lib/modules/<release> (uncompressed modules, depmod run) and
// modules.ext4; it sets k's paths relative to tmp.
func (c *Cache) assemble(ctx context.Context, tmp string, k *Kernel, src assembleSrc) error {
	if err := copyFile(src.vmlinuz, filepath.Join(tmp, "vmlinuz")); err != nil {
		return fmt.Errorf("vmlinuz: %w", err)
	}
	k.Vmlinuz = "vmlinuz"
	if err := copyFile(src.config, filepath.Join(tmp, "config")); err == nil {
		k.Config = "config"
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config: %w", err)
	}
	rootMods := filepath.Join(tmp, "root", "lib", "modules")
	if err := os.MkdirAll(rootMods, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(rootMods, k.Release)
	if src.move {
		if err := os.Rename(src.modules, dst); err != nil {
			return err
		}
	} else if _, err := run(ctx, proc.Cmd{Argv: []string{"cp", "-a", "--", src.modules, dst}}); err != nil {
		return err
	}
	// build/source point at headers outside the tree; modules.dep* from a
	// local tree are regenerated below.
	for _, n := range []string{"build", "source"} {
		if st, err := os.Lstat(filepath.Join(dst, n)); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			_ = os.Remove(filepath.Join(dst, n))
		}
	}
	t := time.Now()
	n, err := decompressModules(ctx, dst)
	if err != nil {
		return err
	}
	c.progressf("kernel %s: decompressed %d modules in %s\n", k.Release, n, since(t))
	t = time.Now()
	if _, err := run(ctx, proc.Cmd{Argv: []string{"depmod", "-b", filepath.Join(tmp, "root"), k.Release}}); err != nil {
		return err
	}
	c.progressf("kernel %s: depmod in %s\n", k.Release, since(t))
	if _, err := os.Stat(filepath.Join(dst, "modules.dep")); err != nil {
		return fmt.Errorf("depmod wrote no modules.dep: %w", err)
	}
	k.ModulesDir = filepath.Join("root", "lib", "modules", k.Release)
	t = time.Now()
	if err := makeExt4(ctx, dst, filepath.Join(tmp, "modules.ext4"), ext4Spec{label: "modules", headroom: 0.05, extraMiB: 8}); err != nil {
		return err
	}
	c.progressf("kernel %s: modules image in %s\n", k.Release, since(t))
	k.ModulesImage = "modules.ext4"
	c.stats.kernelBuilds.Add(1)
	return nil
}

// decompressors turn compressed modules into plain .ko files, in place.
var decompressors = []struct {
	suffix string
	argv   []string
}{
	{".ko.xz", []string{"xz", "-d", "-f", "-q", "-T1"}},
	{".ko.zst", []string{"zstd", "-d", "-f", "-q", "--rm"}},
	{".ko.gz", []string{"gzip", "-d", "-f"}},
}

// decompressModules decompresses every compressed module under dir, in
// batches, two at a time, and returns how many it decompressed.
func decompressModules(ctx context.Context, dir string) (int, error) {
	byTool := make([][]string, len(decompressors))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		for i, dc := range decompressors {
			if strings.HasSuffix(p, dc.suffix) {
				byTool[i] = append(byTool[i], p)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var batches [][]string
	total := 0
	for i, files := range byTool {
		total += len(files)
		for len(files) > 0 {
			n := min(len(files), 256)
			batches = append(batches, append(append([]string(nil), decompressors[i].argv...), files[:n]...))
			files = files[n:]
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(batches))
	sem := make(chan struct{}, 2)
	for i, argv := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := run(ctx, proc.Cmd{Argv: argv}); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// since is a rounded duration for progress lines.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// localKernel imports a kernel from local files the same way as a package.
func (c *Cache) localKernel(ctx context.Context, ref matrix.KernelRef) (*Kernel, error) {
	if ref.Vmlinuz == "" || ref.Modules == "" {
		return nil, errors.New("a local kernel needs both vmlinuz and modules")
	}
	vmlinuz, err := filepath.Abs(ref.Vmlinuz)
	if err != nil {
		return nil, err
	}
	banner, err := KernelBanner(vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("vmlinuz %s: %w", vmlinuz, err)
	}
	release, _, _ := strings.Cut(banner, " ")
	modDir, rel, err := localModuleTree(ref.Modules, release)
	if err != nil {
		return nil, err
	}
	if rel != release {
		return nil, fmt.Errorf("vmlinuz %s is release %s but modules %s are for %s", vmlinuz, release, modDir, rel)
	}
	version := bannerVersion(banner)
	if !MatchesLine(ref.Version, version) {
		return nil, fmt.Errorf("vmlinuz %s is version %s, not %s", vmlinuz, version, ref.Version)
	}
	config := ""
	for _, p := range []string{
		filepath.Join(filepath.Dir(vmlinuz), "config-"+release),
		filepath.Join(ref.Modules, "boot", "config-"+release),
	} {
		if _, err := os.Stat(p); err == nil {
			config = p
			break
		}
	}
	vsum, _, err := hashFile(vmlinuz)
	if err != nil {
		return nil, err
	}
	tree, err := treeFingerprint(modDir)
	if err != nil {
		return nil, err
	}
	csum := ""
	if config != "" {
		if csum, _, err = hashFile(config); err != nil {
			return nil, err
		}
	}
	key := keyOf("kernel-local", vsum, tree, csum)
	inputs := map[string]string{"vmlinuz": vmlinuz, "vmlinuz_sha256": vsum, "modules": modDir, "release": release}
	dir, m, err := c.entry(ctx, "kernels", key, inputs, func(ctx context.Context, tmp string, m *manifest) error {
		c.progressf("kernel: importing local %s\n", release)
		k := &Kernel{Release: release, Version: version}
		if err := c.assemble(ctx, tmp, k, assembleSrc{vmlinuz: vmlinuz, config: config, modules: modDir}); err != nil {
			return err
		}
		m.Kernel = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	return kernelFrom(dir, m)
}

// localModuleTree finds the release directory in a local modules path: the
// path itself (it holds kernel/ or modules.order) or <path>/lib/modules/<release>
// or <path>/usr/lib/modules/<release>.
func localModuleTree(path, release string) (string, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	if st, err := os.Stat(abs); err != nil {
		return "", "", err
	} else if !st.IsDir() {
		return "", "", fmt.Errorf("modules %s: not a directory", abs)
	}
	for _, marker := range []string{"kernel", "modules.order", "modules.builtin"} {
		if _, err := os.Stat(filepath.Join(abs, marker)); err == nil {
			return abs, filepath.Base(abs), nil
		}
	}
	return findModuleTree(abs, release)
}

// treeFingerprint hashes the names, sizes and modification times of a tree.
func treeFingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %o %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

// KernelBanner reads the version string embedded in an x86 bzImage
// (e.g. "6.1.0-28-amd64 (<maintainer address>) #1 SMP ... Debian 6.1.119-1 (2024-11-22)").
func KernelBanner(vmlinuz string) (string, error) {
	f, err := os.Open(vmlinuz)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", fmt.Errorf("not a bzImage: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", errors.New("not a bzImage (no HdrS boot header)")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, off)
	if n == 0 {
		return "", fmt.Errorf("read version string: %w", err)
	}
	s, _, _ := strings.Cut(string(buf[:n]), "\x00")
	if s == "" || !strings.ContainsAny(s[:1], "0123456789") {
		return "", fmt.Errorf("no version string in bzImage header (%q)", s)
	}
	return s, nil
}

var debianBanner = regexp.MustCompile(`Debian ([0-9][^ ]*)`)

// bannerVersion is the upstream version in a kernel banner: from "Debian
// 6.1.119-1" when present, else the release's leading numbers.
func bannerVersion(banner string) string {
	if m := debianBanner.FindStringSubmatch(banner); m != nil {
		return UpstreamVersion(m[1])
	}
	release, _, _ := strings.Cut(banner, " ")
	return regexp.MustCompile(`^[0-9]+(\.[0-9]+)*`).FindString(release)
}

func kernelFrom(dir string, m *manifest) (*Kernel, error) {
	if m.Kernel == nil {
		return nil, &CorruptError{dir, "manifest has no kernel"}
	}
	k := *m.Kernel
	k.Vmlinuz = filepath.Join(dir, k.Vmlinuz)
	k.ModulesDir = filepath.Join(dir, k.ModulesDir)
	k.ModulesImage = filepath.Join(dir, k.ModulesImage)
	if k.Config != "" {
		k.Config = filepath.Join(dir, k.Config)
	}
	return &k, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// moduleName normalises a module name or file name: "virtio-blk.ko" → "virtio_blk".
func moduleName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// HasModule reports whether the kernel provides module name, as a loadable
// module (modules.dep) or built in (modules.builtin). "-" and "_" are the same.
func (k *Kernel) HasModule(name string) bool {
	want := moduleName(name)
	for _, f := range []string{"modules.dep", "modules.builtin"} {
		file, err := os.Open(filepath.Join(k.ModulesDir, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			path, _, _ := strings.Cut(sc.Text(), ":")
			if moduleName(path) == want {
				file.Close()
				return true
			}
		}
		file.Close()
	}
	return false
}

// ModuleDeps returns the files (relative to ModulesDir) to load for module
// name, dependencies first and the module itself last, from modules.dep.
// A built-in module returns no files and no error.
func (k *Kernel) ModuleDeps(name string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	scanLines(string(b), func(line string) {
		path, rest, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		deps[path] = strings.Fields(rest)
		byName[moduleName(path)] = path
	})
	path, ok := byName[moduleName(name)]
	if !ok {
		if k.HasModule(name) {
			return nil, nil
		}
		return nil, fmt.Errorf("kernel %s has no module %s", k.Release, name)
	}
	// modules.dep lists all transitive dependencies, the nearest first; load in reverse.
	d := deps[path]
	out := make([]string, 0, len(d)+1)
	for i := len(d) - 1; i >= 0; i-- {
		out = append(out, d[i])
	}
	return append(out, path), nil
}

// ConfigMap parses the kernel's config (internal/kconfig): CONFIG_X → "y",
// "m", "n" (not set) or a value.
func (k *Kernel) ConfigMap() (kconfig.Config, error) {
	if k.Config == "" {
		return nil, fmt.Errorf("kernel %s: no config file", k.Release)
	}
	return kconfig.Read(k.Config)
}
