package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// formatVersion is part of every cache key and manifest: bump it when the
// layout or content of entries changes, so old entries are not reused.
const formatVersion = 1

const manifestName = "manifest.json"

// Cache builds and reuses kernels and root filesystems under one directory:
//
//	<dir>/apt/<suite>/        private apt environment (sources.list, indexes, archives)
//	<dir>/kernels/<key>/      one imported kernel (vmlinuz, config, root/lib/modules/<release>, modules.ext4)
//	<dir>/rootfs/<key>/       one root filesystem (rootfs.ext4, packages.txt)
//	<dir>/<kind>/<key>.lock   serialises builders of one key
//	<dir>/.trash/             entries being pruned (store.go)
//
// A Cache is safe for concurrent use, also by several processes sharing dir.
// Every entry a Cache hands out stays leased (a shared flock on the entry,
// see Use) until Close, so `matrixctl cache prune` in another process skips
// it while this one boots from its files.
type Cache struct {
	dir  string
	opts options

	mirrorsOnce sync.Once
	mirrors     Mirrors
	mirrorsErr  error

	mu         sync.Mutex
	aptUpdated map[string]bool
	verified   map[string]time.Time // entry dir -> manifest mtime whose hashes were checked
	leases     map[string]*Lease    // entry dir -> this Cache's shared lock on it

	stats struct {
		aptUpdates, downloads, kernelBuilds, rootfsBuilds, reuses, rebuilds atomic.Int64
	}
}

// Stats counts the work a Cache did, so callers (and tests) can tell that a
// second request for the same input built and downloaded nothing.
type Stats struct {
	AptUpdates   int64 // apt-get update runs
	Downloads    int64 // packages downloaded
	KernelBuilds int64 // kernel entries built
	RootfsBuilds int64 // rootfs entries built
	Reuses       int64 // complete entries reused
	Rebuilds     int64 // partial or corrupt entries removed before a build
}

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	return Stats{
		AptUpdates:   c.stats.aptUpdates.Load(),
		Downloads:    c.stats.downloads.Load(),
		KernelBuilds: c.stats.kernelBuilds.Load(),
		RootfsBuilds: c.stats.rootfsBuilds.Load(),
		Reuses:       c.stats.reuses.Load(),
		Rebuilds:     c.stats.rebuilds.Load(),
	}
}

type options struct {
	mirror, securityMirror string
	aptRoot                string
	progress               io.Writer
	aptMaxAge              time.Duration
	hashOnReuse            bool
}

// Option configures a Cache.
type Option func(*options)

// WithMirrors overrides the Debian archive and security archive URIs
// (default: from the host's apt sources; env MATRIXCTL_MIRROR,
// MATRIXCTL_SECURITY_MIRROR). An empty security URI keeps the
// environment's or the host's.
func WithMirrors(debian, security string) Option {
	return func(o *options) {
		o.mirror = debian
		if security != "" {
			o.securityMirror = security
		}
	}
}

// WithAptRoot reads the apt sources from root/etc/apt instead of /etc/apt.
func WithAptRoot(root string) Option { return func(o *options) { o.aptRoot = root } }

// WithProgress sends phase lines and the tools' output lines to w.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// WithAptMaxAge sets how old a suite's indexes may be before apt-get update
// runs again (default 6h).
func WithAptMaxAge(d time.Duration) Option { return func(o *options) { o.aptMaxAge = d } }

// WithHashVerify sets whether reusing an entry re-checks the sha256 of every
// file (default true; sizes are always checked). A Cache hashes an entry at
// most once; later reuses in the same Cache check sizes only.
func WithHashVerify(on bool) Option { return func(o *options) { o.hashOnReuse = on } }

// optionsFor is the one place that reads the environment:
//
//	MATRIXCTL_MIRROR            Debian archive URI
//	MATRIXCTL_SECURITY_MIRROR   Debian security archive URI
func optionsFor(opts []Option) options {
	o := options{
		mirror:         os.Getenv("MATRIXCTL_MIRROR"),
		securityMirror: os.Getenv("MATRIXCTL_SECURITY_MIRROR"),
		aptRoot:        "/",
		aptMaxAge:      6 * time.Hour,
		hashOnReuse:    true,
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// New opens (creating it if needed) the cache in dir.
func New(dir string, opts ...Option) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("images: empty cache dir")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	return &Cache{dir: abs, opts: optionsFor(opts), aptUpdated: map[string]bool{}, verified: map[string]time.Time{},
		leases: map[string]*Lease{}}, nil
}

// Hold leases the entry at path (a directory of this cache) until Close,
// recording the use; holding it again only records the use. For entries
// built outside this package (Vagrant boxes): call it under the entry's
// build lock, so a prune cannot slip in between finding and holding it.
func (c *Cache) Hold(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.leases[path]; ok && l.f != nil {
		touchUse(l.f, path)
		return nil
	}
	l, err := Use(path)
	if err != nil {
		return err
	}
	c.leases[path] = l
	return nil
}

// Close releases every entry this Cache holds. The Cache stays usable:
// a later request leases its entry again.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, l := range c.leases {
		l.Release()
		delete(c.leases, p)
	}
	return nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

// Mirrors returns the mirrors in use: the overrides, else the host's apt sources.
func (c *Cache) Mirrors() (Mirrors, error) {
	c.mirrorsOnce.Do(func() {
		m := Mirrors{Debian: c.opts.mirror, Security: c.opts.securityMirror}
		if m.Debian == "" || m.Security == "" {
			host, err := HostMirrors(c.opts.aptRoot)
			if err != nil && m.Debian == "" {
				c.mirrorsErr = fmt.Errorf("find Debian mirror (set MATRIXCTL_MIRROR to override): %w", err)
				return
			}
			if m.Debian == "" {
				m.Debian = host.Debian
			}
			if m.Security == "" {
				m.Security = host.Security
			}
		}
		m.Debian = strings.TrimRight(m.Debian, "/")
		m.Security = strings.TrimRight(m.Security, "/")
		c.mirrors = m
	})
	return c.mirrors, c.mirrorsErr
}

func (c *Cache) progressf(format string, args ...any) {
	if c.opts.progress != nil {
		fmt.Fprintf(c.opts.progress, format, args...)
	}
}

// keyOf hashes the parts of a cache key.
func keyOf(parts ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "format %d\n", formatVersion)
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// manifest is written last into a complete entry.
type manifest struct {
	Format  int               `json:"format"`
	Kind    string            `json:"kind"`
	Inputs  map[string]string `json:"inputs"`
	Created time.Time         `json:"created"`
	Kernel  *Kernel           `json:"kernel,omitempty"` // paths relative to the entry
	Rootfs  *Rootfs           `json:"rootfs,omitempty"` // paths relative to the entry
	Files   []manifestFile    `json:"files"`
}

type manifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// CorruptError says a cache entry is partial or does not match its manifest.
type CorruptError struct {
	Entry  string
	Reason string
}

func (e *CorruptError) Error() string { return fmt.Sprintf("cache entry %s: %s", e.Entry, e.Reason) }

// verifyEntry checks dir against its manifest: every listed file exists with
// its size and (when hash) its sha256.
func verifyEntry(dir string, hash bool) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, &CorruptError{dir, "no manifest: " + err.Error()}
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &CorruptError{dir, "bad manifest: " + err.Error()}
	}
	if m.Format != formatVersion {
		return nil, &CorruptError{dir, fmt.Sprintf("manifest format %d, want %d", m.Format, formatVersion)}
	}
	if len(m.Files) == 0 {
		return nil, &CorruptError{dir, "manifest lists no files"}
	}
	for _, f := range m.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if !filepath.IsLocal(filepath.FromSlash(f.Path)) {
			return nil, &CorruptError{dir, "manifest path outside entry: " + f.Path}
		}
		st, err := os.Lstat(p)
		if err != nil {
			return nil, &CorruptError{dir, err.Error()}
		}
		if !st.Mode().IsRegular() || st.Size() != f.Size {
			return nil, &CorruptError{dir, fmt.Sprintf("%s: size %d, manifest says %d", f.Path, st.Size(), f.Size)}
		}
	}
	if hash {
		for _, f := range m.Files {
			sum, _, err := hashFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
			if err != nil {
				return nil, &CorruptError{dir, err.Error()}
			}
			if sum != f.SHA256 {
				return nil, &CorruptError{dir, fmt.Sprintf("%s: sha256 %s, manifest says %s", f.Path, sum, f.SHA256)}
			}
		}
	}
	return &m, nil
}

// VerifyEntry checks a cache entry directory against its manifest (sizes and
// sha256 of every listed file). It returns a *CorruptError when it does not match.
func VerifyEntry(dir string) error {
	_, err := verifyEntry(dir, true)
	return err
}

// writeManifest lists every regular file under dir (symlinks are recorded by
// the files they point to inside the entry, if any) and writes the manifest
// last: write, fsync, rename, fsync dir.
func writeManifest(dir string, m *manifest) error {
	m.Format = formatVersion
	m.Created = time.Now().UTC()
	m.Files = nil
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == manifestName || strings.HasPrefix(rel, manifestName) {
			return nil
		}
		sum, size, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, manifestFile{Path: filepath.ToSlash(rel), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, manifestName), b)
}

// writeFileAtomic writes data to path via a temp file, fsync and rename, then
// fsyncs the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// hashFile returns the hex sha256 and size of a file.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// LockFile takes an exclusive flock on path (created if needed), waiting
// until it is free or ctx ends. The returned func releases it.
func LockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// entry returns the complete cache entry <dir>/<kind>/<key>, building it with
// build when it is missing, partial or corrupt. build fills a fresh temp dir
// next to the entry and returns the manifest metadata; entry then lists and
// hashes the files, writes the manifest last and renames the dir into place.
// Builders of one key serialise on <kind>/<key>.lock.
func (c *Cache) entry(ctx context.Context, kind, key string, inputs map[string]string,
	build func(ctx context.Context, tmp string, m *manifest) error) (string, *manifest, error) {
	base := filepath.Join(c.dir, kind)
	final := filepath.Join(base, key)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", nil, err
	}
	unlock, err := LockFile(ctx, final+".lock")
	if err != nil {
		return "", nil, err
	}
	defer unlock()

	if m, err := c.reuse(final); err == nil {
		if err := c.Hold(final); err != nil {
			return "", nil, err
		}
		c.stats.reuses.Add(1)
		return final, m, nil
	} else if _, statErr := os.Stat(final); statErr == nil {
		c.progressf("cache: rebuilding %s/%s: %v\n", kind, key, err)
		c.stats.rebuilds.Add(1)
		if err := removeTree(final); err != nil {
			return "", nil, err
		}
	}
	stale, _ := filepath.Glob(filepath.Join(base, ".tmp-"+key+"-*"))
	for _, s := range stale {
		if err := removeTree(s); err != nil {
			return "", nil, err
		}
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+key+"-")
	if err != nil {
		return "", nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeTree(tmp)
		}
	}()
	m := &manifest{Kind: kind, Inputs: inputs}
	if err := build(ctx, tmp, m); err != nil {
		return "", nil, err
	}
	if err := writeManifest(tmp, m); err != nil {
		return "", nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", nil, err
	}
	if err := syncDir(base); err != nil {
		return "", nil, err
	}
	ok = true
	c.markVerified(final)
	if err := c.Hold(final); err != nil {
		return "", nil, err
	}
	return final, m, nil
}

// reuse verifies an existing entry: sizes always, hashes once per Cache.
func (c *Cache) reuse(dir string) (*manifest, error) {
	st, err := os.Stat(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, &CorruptError{dir, "no manifest"}
	}
	c.mu.Lock()
	seen, ok := c.verified[dir]
	c.mu.Unlock()
	hash := c.opts.hashOnReuse && !(ok && seen.Equal(st.ModTime()))
	m, err := verifyEntry(dir, hash)
	if err != nil {
		return nil, err
	}
	c.markVerified(dir)
	return m, nil
}

func (c *Cache) markVerified(dir string) {
	st, err := os.Stat(filepath.Join(dir, manifestName))
	if err != nil {
		return
	}
	c.mu.Lock()
	c.verified[dir] = st.ModTime()
	c.mu.Unlock()
}

// removeTree removes dir, first refusing if anything is mounted under it
// (mmdebstrap mounts /proc, /sys and /dev into its target: removing through
// such a mount would delete host files).
func removeTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if mounts, _ = mountsUnder(dir); len(mounts) > 0 {
		return fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(mounts, ", "))
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir, shallowest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	var out []string
	scanLines(string(b), func(line string) {
		f := strings.Fields(line)
		if len(f) < 5 {
			return
		}
		mp := unescapeMountinfo(f[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	})
	sort.Slice(out, func(i, j int) bool { return len(out[i]) < len(out[j]) })
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
