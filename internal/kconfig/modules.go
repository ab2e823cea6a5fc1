package kconfig

import (
	"io/fs"
	"path/filepath"
	"strings"
)

// moduleExts are the file names a loadable module has in a module tree:
// plain (bullseye's 5.10, bookworm's 6.1, and every tree internal/images
// imports) or compressed (trixie's 6.12 as packaged).
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Modules is the set of loadable modules in a module tree, by name with
// "-" written as "_" (modprobe treats them alike).
type Modules map[string]bool

// ReadModules lists the loadable modules under dir (lib/modules/<release>);
// a directory that does not exist has none.
func ReadModules(dir string) (Modules, error) {
	m := Modules{}
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if d == nil || d.IsDir() {
				return fs.SkipDir // unreadable or missing: nothing there
			}
			return nil
		}
		if name, ok := ModuleName(d.Name()); ok && !d.IsDir() {
			m[name] = true
		}
		return nil
	})
	return m, err
}

// Has reports whether the tree has module name ("-" and "_" alike).
func (m Modules) Has(name string) bool { return m[normalize(name)] }

// HasModule reports whether the module tree under dir has module name
// (.ko, .ko.xz, .ko.zst or .ko.gz; "-" and "_" alike). It walks the tree:
// for more than one lookup, ReadModules once.
func HasModule(dir, name string) bool {
	want := normalize(name)
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return nil
		}
		if got, ok := ModuleName(d.Name()); ok && got == want && !d.IsDir() {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// ModuleName is the module a file name holds ("br_netfilter.ko.xz" →
// "br_netfilter", "virtio-blk.ko" → "virtio_blk"); ok is false for a file
// that is not a module.
func ModuleName(file string) (name string, ok bool) {
	for _, ext := range moduleExts {
		if base, found := strings.CutSuffix(file, ext); found && base != "" {
			return normalize(base), true
		}
	}
	return "", false
}

func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }
