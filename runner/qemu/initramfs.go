package qemu

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// initramfsFormat changes whenever the initramfs layout changes, so old cache entries are not reused.
const initramfsFormat = "matrixctl-initramfs-1"

// initramfsModules are the modules the agent needs before it can see its
// disks and network, in the order they are wanted. Built-in modules are
// skipped; a required module that is neither built in nor present is an error.
var initramfsModules = []struct {
	name     string
	required bool
}{
	{"crc32c_generic", false}, // ext4/jbd2 soft-depend on crypto-crc32c
	{"virtio_pci", true},
	{"virtio_blk", true},
	{"virtio_net", true},
	{"ext4", true},
}

// moduleIndex is a parsed modules.dep plus modules.builtin.
type moduleIndex struct {
	path    map[string]string   // module name -> path relative to the module dir
	deps    map[string][]string // module name -> dependency names
	builtin map[string]bool
}

func moduleName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// parseModulesDep parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko" lines).
func parseModulesDep(r io.Reader) (map[string]string, map[string][]string, error) {
	paths := map[string]string{}
	deps := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return nil, nil, fmt.Errorf("modules.dep:%d: want \"module: deps\", got %q", n, line)
		}
		mod = strings.TrimSpace(mod)
		name := moduleName(mod)
		paths[name] = mod
		for _, d := range strings.Fields(rest) {
			deps[name] = append(deps[name], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("modules.dep: %w", err)
	}
	return paths, deps, nil
}

func loadModuleIndex(dir string) (*moduleIndex, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer f.Close()
	paths, deps, err := parseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("module index %s: %w", dir, err)
	}
	idx := &moduleIndex{path: paths, deps: deps, builtin: map[string]bool{}}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			idx.builtin[moduleName(l)] = true
		}
	}
	return idx, nil
}

// closure returns the modules to load for wanted, dependencies first.
func (idx *moduleIndex) closure() ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(name string, stack []string) error
	visit = func(name string, stack []string) error {
		if seen[name] {
			return nil
		}
		for _, s := range stack {
			if s == name {
				return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
			}
		}
		if _, ok := idx.path[name]; !ok {
			return fmt.Errorf("module %s (needed by %s) is not in modules.dep", name, strings.Join(stack, " -> "))
		}
		for _, d := range idx.deps[name] {
			if err := visit(d, append(stack, name)); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, name)
		return nil
	}
	for _, m := range initramfsModules {
		if _, ok := idx.path[m.name]; !ok {
			if idx.builtin[m.name] || !m.required {
				continue
			}
			return nil, fmt.Errorf("module %s is neither built in nor in modules.dep", m.name)
		}
		if err := visit(m.name, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Initramfs returns a newc cpio initramfs holding agent as /init and the
// modules the agent needs from k. It is cached under cacheDir by (format,
// agent binary, kernel modules) and rebuilt when absent.
func Initramfs(k *images.Kernel, agent, cacheDir string) (string, error) {
	idx, err := loadModuleIndex(k.ModulesDir)
	if err != nil {
		return "", err
	}
	mods, err := idx.closure()
	if err != nil {
		return "", fmt.Errorf("initramfs for %s: %w", k.Release, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", initramfsFormat, k.Release)
	files := []string{agent}
	for _, m := range mods {
		if p := idx.path[m]; !strings.HasSuffix(p, ".ko") {
			return "", fmt.Errorf("initramfs for %s: module %s is compressed (%s); the kernel import must leave plain .ko files", k.Release, m, p)
		}
		files = append(files, filepath.Join(k.ModulesDir, idx.path[m]))
	}
	for _, f := range files {
		if err := hashFile(h, f); err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
	}
	key := hex.EncodeToString(h.Sum(nil))[:24]
	out := filepath.Join(images.InitramfsDir(cacheDir), key+".cpio")
	if st, err := os.Stat(out); err == nil && st.Size() > 0 {
		return out, nil
	}
	// What `matrixctl cache ls` says about the entry (best effort).
	_ = os.MkdirAll(filepath.Dir(out), 0o755)
	_ = os.WriteFile(strings.TrimSuffix(out, ".cpio")+images.InitramfsDescriptionSuffix, []byte("kernel "+k.Release+"\n"), 0o644)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	var buf bytes.Buffer
	w := newCpio(&buf)
	for _, d := range []string{"dev", "proc", "sys", "newroot", "mx", "mx/modules"} {
		w.dir(d)
	}
	w.charDev("dev/console", 0o600, 5, 1)
	agentBytes, err := os.ReadFile(agent)
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	w.file("init", 0o755, agentBytes)
	var order strings.Builder
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(k.ModulesDir, idx.path[m]))
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		w.file(strings.TrimPrefix(agentproto.InitramfsModuleDir, "/")+"/"+m+".ko", 0o644, b)
		order.WriteString(m + ".ko\n")
	}
	w.file(strings.TrimPrefix(agentproto.InitramfsModuleOrder, "/"), 0o644, []byte(order.String()))
	if err := w.close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), key+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	return out, nil
}

// leasedInitramfs is Initramfs for cfg with a shared lock on the file
// (images.Use): built again when a `cache prune` removed it in between.
func leasedInitramfs(cfg Config) (string, *images.Lease, error) {
	for try := 0; ; try++ {
		p, err := Initramfs(cfg.Kernel, cfg.Agent, cfg.CacheDir)
		if err != nil {
			return "", nil, err
		}
		l, err := images.Use(p)
		if err == nil {
			return p, l, nil
		}
		if try > 0 || !(errors.Is(err, images.ErrReplaced) || errors.Is(err, fs.ErrNotExist)) {
			return "", nil, err
		}
	}
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\n", filepath.Base(path))
	_, err = io.Copy(h, f)
	return err
}

// cpioWriter writes the "newc" cpio format the kernel unpacks.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func newCpio(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChr  = 0o020000
)

func (c *cpioWriter) entry(name string, mode uint32, rmaj, rmin int, data []byte) {
	if c.err != nil {
		return
	}
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	c.ino++
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	pad(&b)
	b.Write(data)
	pad(&b)
	_, c.err = c.w.Write(b.Bytes())
}

// pad aligns the buffer to 4 bytes; cpio headers start at offset 0, so the
// running length of everything written is a multiple of 4 after each entry.
func pad(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

func (c *cpioWriter) dir(name string) { c.entry(name, modeDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, modeFile|perm, 0, 0, data)
}
func (c *cpioWriter) charDev(name string, perm uint32, maj, min int) {
	c.entry(name, modeChr|perm, maj, min, nil)
}
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}
