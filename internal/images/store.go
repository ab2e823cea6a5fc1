package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kinds of cache entries, one directory of the cache each:
//
//	kernels/<key>/       (Cache.Kernel)
//	rootfs/<key>/        (Cache.Rootfs)
//	initramfs/<key>.cpio (runner/qemu's guest-agent initramfs, a single file)
//	boxes/<key>/         (vagrant.BuildBox; the box is also registered with `vagrant box add`)
//
// Every entry may be in use by a run: a run holds a shared flock on the
// entry (the directory, or the file) for as long as it boots from it (Use).
// Prune takes the entry's exclusive flock without waiting and skips the
// entry when it cannot; a directory entry is also skipped while its builder
// holds <key>.lock. A pruned entry is first renamed into <cache>/.trash
// (atomic: a half-removed entry is never reused), then removed.
const (
	KindKernel    = "kernel"
	KindRootfs    = "rootfs"
	KindInitramfs = "initramfs"
	KindBox       = "box"
)

// storeKinds maps a kind to its directory and whether entries are files.
var storeKinds = []struct {
	kind, dir string
	file      bool // entries are <key>.cpio files, not directories
}{
	{KindKernel, "kernels", false},
	{KindRootfs, "rootfs", false},
	{KindInitramfs, "initramfs", true},
	{KindBox, "boxes", false},
}

// InitramfsDir is the directory of the initramfs entries in a cache dir.
func InitramfsDir(cacheDir string) string { return filepath.Join(cacheDir, "initramfs") }

// InitramfsDescriptionSuffix is the name of the sidecar file beside an
// initramfs entry that holds its one-line description (the kernel release).
const InitramfsDescriptionSuffix = ".txt"

// trashDir is where pruned entries go before they are removed.
const trashDir = ".trash"

// lastUsedName is the file in a directory entry whose mtime is the last use.
const lastUsedName = "last-used"

// Entry is one cache entry.
type Entry struct {
	Kind        string    `json:"kind"`
	Key         string    `json:"key"`
	Description string    `json:"description"`
	Path        string    `json:"path"`
	Size        int64     `json:"size"` // bytes on disk (allocated blocks)
	Created     time.Time `json:"created"`
	LastUsed    time.Time `json:"last_used"`
	InUse       bool      `json:"in_use"`
	// Box is the Vagrant box name a box entry was registered as
	// (`vagrant box add`); pruning the entry leaves that registration.
	Box string `json:"box,omitempty"`
}

// ListEntries lists every entry of every kind in the cache dir, oldest
// use first. In-use state is probed with a non-blocking exclusive flock
// that is released at once.
func ListEntries(dir string) ([]Entry, error) {
	var out []Entry
	for _, k := range storeKinds {
		base := filepath.Join(dir, k.dir)
		des, err := os.ReadDir(base)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, de := range des {
			name := de.Name()
			if strings.HasPrefix(name, ".") {
				continue // a builder's temp dir
			}
			var e Entry
			switch {
			case k.file && de.Type().IsRegular() && strings.HasSuffix(name, ".cpio"):
				e = fileEntry(k.kind, filepath.Join(base, name))
			case !k.file && de.IsDir() && !strings.HasSuffix(name, ".tmp"):
				e = dirEntry(k.kind, filepath.Join(base, name))
			default:
				continue
			}
			e.InUse = inUse(e)
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out, nil
}

// dirEntry describes a directory entry from its manifest (an images
// manifest or a box manifest); one without a readable manifest is partial.
func dirEntry(kind, path string) Entry {
	e := Entry{Kind: kind, Key: filepath.Base(path), Path: path, Size: DiskUsage(path)}
	var m struct {
		Created time.Time         `json:"created"`
		Inputs  map[string]string `json:"inputs"`
		Kernel  *Kernel           `json:"kernel"`
		Rootfs  *Rootfs           `json:"rootfs"`
		Box     *struct {
			Name    string `json:"name"`
			Release string `json:"release"`
		} `json:"box"`
	}
	b, err := os.ReadFile(filepath.Join(path, manifestName))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	st, serr := os.Stat(filepath.Join(path, manifestName))
	switch {
	case err != nil || serr != nil:
		e.Description = "partial (no manifest)"
		if st, err := os.Stat(path); err == nil {
			m.Created = st.ModTime()
		}
	case m.Kernel != nil:
		e.Description = m.Kernel.Release
		if m.Kernel.Package != "" {
			e.Description += " (" + m.Kernel.Package + " " + m.Kernel.PackageVersion + ")"
		} else {
			e.Description += " (local)"
		}
	case m.Rootfs != nil:
		e.Description = m.Rootfs.Suite + ", docker " + m.Inputs["docker"]
		if r := m.Inputs["remove"]; r != "" {
			e.Description += ", removed " + r
		}
	case m.Box != nil:
		e.Box = m.Box.Name
		e.Description = m.Box.Name + " (kernel " + m.Box.Release + ")"
	default:
		e.Description = "unknown manifest"
	}
	e.Created = m.Created
	if e.Created.IsZero() && st != nil {
		e.Created = st.ModTime()
	}
	e.LastUsed = e.Created
	if st, err := os.Stat(filepath.Join(path, lastUsedName)); err == nil {
		e.LastUsed = st.ModTime()
	}
	return e
}

// fileEntry describes an initramfs file: created is its birth time where
// the filesystem records one, last used its mtime (Use touches it).
func fileEntry(kind, path string) Entry {
	e := Entry{Kind: kind, Key: strings.TrimSuffix(filepath.Base(path), ".cpio"), Path: path, Size: DiskUsage(path)}
	e.Description = "guest-agent initramfs"
	if b, err := os.ReadFile(strings.TrimSuffix(path, ".cpio") + InitramfsDescriptionSuffix); err == nil {
		e.Description += " for " + strings.TrimSpace(firstLine(string(b)))
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BTIME|unix.STATX_MTIME, &stx); err == nil {
		e.LastUsed = time.Unix(stx.Mtime.Sec, int64(stx.Mtime.Nsec))
		e.Created = e.LastUsed
		if stx.Mask&unix.STATX_BTIME != 0 {
			e.Created = time.Unix(stx.Btime.Sec, int64(stx.Btime.Nsec))
		}
	}
	return e
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// DiskUsage is the allocated size of a file or tree (sparse images count
// what they occupy); unreadable parts count nothing.
func DiskUsage(path string) int64 {
	var n int64
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// inUse probes whether anyone holds the entry (or, for a directory, its
// build lock).
func inUse(e Entry) bool {
	unlock, reason := lockForRemoval(e)
	if reason != "" {
		return true
	}
	unlock()
	return false
}

// lockForRemoval takes, without waiting, the locks that keep everyone else
// off the entry: the build lock of a directory entry, then the exclusive
// flock on the entry itself. reason says why it could not.
func lockForRemoval(e Entry) (unlock func(), reason string) {
	var held []*os.File
	release := func() {
		for _, f := range held {
			f.Close()
		}
	}
	if e.Kind != KindInitramfs {
		f, err := os.OpenFile(e.Path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, "build lock: " + err.Error()
		}
		held = append(held, f)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			release()
			return nil, "being built or verified"
		}
	}
	f, err := os.Open(e.Path)
	if err != nil {
		release()
		return nil, err.Error()
	}
	held = append(held, f)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		release()
		return nil, "in use"
	}
	if !samePath(f, e.Path) {
		release()
		return nil, "replaced while pruning"
	}
	return release, ""
}

// samePath says whether f is still the file or directory at path.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// ErrReplaced says an entry was pruned (or rebuilt) between finding it and
// locking it: look it up (or build it) again.
var ErrReplaced = errors.New("cache entry was pruned or replaced")

// Lease is a shared lock on a cache entry: while it is held Prune skips
// the entry.
type Lease struct{ f *os.File }

// Use takes a shared lock on the entry at path (a directory or an
// initramfs file) and records the use (the entry's last-used time). It
// waits while a Prune holds the entry (milliseconds: the rename), and
// returns ErrReplaced when the entry was pruned meanwhile.
func Use(path string) (*Lease, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_SH)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !samePath(f, path) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrReplaced)
	}
	touchUse(f, path)
	return &Lease{f: f}, nil
}

// touchUse records a use: the mtime of a directory entry's last-used file,
// or of the file entry itself. Best effort: a read-only cache still runs.
func touchUse(f *os.File, path string) {
	now := time.Now()
	st, err := f.Stat()
	if err != nil {
		return
	}
	if !st.IsDir() {
		_ = os.Chtimes(path, now, now)
		return
	}
	p := filepath.Join(path, lastUsedName)
	if err := os.Chtimes(p, now, now); errors.Is(err, fs.ErrNotExist) {
		if lf, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			lf.Close()
		}
	}
}

// Release drops the lock. It is idempotent.
func (l *Lease) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// PruneOptions selects what Prune removes.
type PruneOptions struct {
	// OlderThan removes entries not used for longer (0: no age limit).
	OlderThan time.Duration
	// MaxSize then removes the least recently used entries until the cache
	// holds at most this many bytes (negative: no size limit).
	MaxSize int64
	// DryRun only says what would be removed.
	DryRun bool
	// Now is the time ages are measured from (zero: time.Now()).
	Now time.Time
}

// Skipped is an entry Prune chose but could not remove, and why.
type Skipped struct {
	Entry  Entry  `json:"entry"`
	Reason string `json:"reason"`
}

// PruneResult says what Prune removed and kept.
type PruneResult struct {
	Removed []Entry   `json:"removed"`
	Skipped []Skipped `json:"skipped"`
	Freed   int64     `json:"freed"` // bytes of the removed entries
	Kept    int64     `json:"kept"`  // bytes of the entries left
}

// Prune removes the entries not used within OlderThan, then the least
// recently used ones beyond MaxSize, skipping entries in use. It first
// finishes removals a crashed Prune left in the trash.
func Prune(dir string, o PruneOptions) (*PruneResult, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if !o.DryRun {
		if err := emptyTrash(dir); err != nil {
			return nil, err
		}
	}
	entries, err := ListEntries(dir) // least recently used first
	if err != nil {
		return nil, err
	}
	res := &PruneResult{}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	for _, e := range entries {
		old := o.OlderThan > 0 && o.Now.Sub(e.LastUsed) > o.OlderThan
		big := o.MaxSize >= 0 && total > o.MaxSize
		if !old && !big {
			continue
		}
		if reason := removeEntry(dir, e, o.DryRun); reason != "" {
			res.Skipped = append(res.Skipped, Skipped{Entry: e, Reason: reason})
			continue
		}
		res.Removed = append(res.Removed, e)
		res.Freed += e.Size
		total -= e.Size
	}
	res.Kept = total
	return res, nil
}

// removeEntry renames e into the trash under its locks, then removes it;
// a non-empty result is why it did not.
func removeEntry(dir string, e Entry, dryRun bool) string {
	unlock, reason := lockForRemoval(e)
	if reason != "" {
		return reason
	}
	if dryRun {
		unlock()
		return ""
	}
	trash := filepath.Join(dir, trashDir)
	if err := os.MkdirAll(trash, 0o755); err != nil {
		unlock()
		return err.Error()
	}
	to := filepath.Join(trash, e.Kind+"-"+e.Key+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	err := os.Rename(e.Path, to)
	if err == nil && e.Kind == KindInitramfs {
		_ = os.Remove(strings.TrimSuffix(e.Path, ".cpio") + InitramfsDescriptionSuffix)
	}
	if err == nil {
		err = syncDir(filepath.Dir(e.Path))
	}
	unlock()
	if err != nil {
		return err.Error()
	}
	if err := removeTree(to); err != nil {
		return "moved to the trash, not removed: " + err.Error()
	}
	return ""
}

// emptyTrash removes what an interrupted Prune left in the trash.
func emptyTrash(dir string) error {
	des, err := os.ReadDir(filepath.Join(dir, trashDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range des {
		if err := removeTree(filepath.Join(dir, trashDir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// DiskSpace is the free and total size of the filesystem holding a path.
type DiskSpace struct {
	Free, Total uint64
}

// DiskSpaceOf statfs()s path (the nearest existing parent when it does not
// exist yet).
func DiskSpaceOf(path string) (DiskSpace, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		if err == nil {
			return DiskSpace{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)}, nil
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, unix.ENOENT) || parent == path {
			return DiskSpace{}, fmt.Errorf("statfs %s: %w", path, err)
		}
		path = parent
	}
}

// Low says the filesystem is nearly full: less than minFree bytes or
// less than minPercent % of it free.
func (d DiskSpace) Low(minFree uint64, minPercent float64) bool {
	return d.Free < minFree || (d.Total > 0 && float64(d.Free)*100/float64(d.Total) < minPercent)
}
