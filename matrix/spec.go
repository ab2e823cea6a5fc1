package matrix

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Spec format identifiers; a spec file starts with
//
//	apiVersion: matrixctl/v1
//	kind: Matrix
const (
	APIVersion = "matrixctl/v1"
	Kind       = "Matrix"
)

// Limits that keep a spec (or a fuzzer) from asking for an absurd plan.
const (
	MaxCells   = 4096
	MaxRepeats = 1000
	MaxCPUs    = 64
	MinMemMiB  = 128
	MaxMemMiB  = 1 << 20
)

// Spec is a decoded, validated matrix spec. Build it with Load; a Spec built
// in code should be checked with Validate before Plan.
type Spec struct {
	// File is the path the spec was loaded from ("" for a spec built in code).
	File       string
	APIVersion string
	Kind       string
	Axes       Axes
	// Exclude drops matching combinations of the axes (partial match).
	Exclude []Entry
	// Include extends matching combinations with settings, or adds new cells,
	// with GitHub Actions strategy.matrix semantics.
	Include []Entry
	// Defaults are the settings of every cell before include entries apply.
	Defaults Settings
	// Rules are extra compatibility rules from the spec, checked after the
	// built-in ones (BuiltinRules).
	Rules []Rule

	pos map[string]position // key path → where it is in File
}

// Axes are the four lists whose cross product is the matrix.
type Axes struct {
	Kernel []KernelRef
	Distro []DistroRef
	Docker []DockerValue
	Driver []string
}

// DockerValue is one value of the docker axis: DockerFromDistro ("the distro's
// own docker.io") or an upstream version, optionally pinned to the Debian
// suite (and package) that provides it.
type DockerValue struct {
	Version string
	Package string
	Suite   string
}

// Entry is one include or exclude entry. Empty axis fields are not part of
// the match.
type Entry struct {
	Kernel, Distro, Docker, Driver string
	// Set holds the settings an include entry adds to the cells it applies to.
	Set SettingsPatch
	key string // "include[2]", for error messages
}

// SettingsPatch holds settings given in the spec; nil fields are unset.
type SettingsPatch struct {
	Probes     *[]string
	Soak       *time.Duration
	Repeats    *int
	Timeout    *time.Duration
	CPUs       *int
	MemoryMB   *int
	ScratchFS  *string
	CrashCheck *bool
	Faults     *[]string
	// FaultProbability is set with Faults (nil map: every fault always).
	FaultProbability *map[string]float64
	Init             *string
	Cgroup           *string
	Packages         *PackageChanges
}

// Apply sets every field of p that is set on s.
func (p SettingsPatch) Apply(s *Settings) {
	if p.Probes != nil {
		s.Probes = append([]string(nil), (*p.Probes)...)
	}
	if p.Soak != nil {
		s.Soak = *p.Soak
	}
	if p.Repeats != nil {
		s.Repeats = *p.Repeats
	}
	if p.Timeout != nil {
		s.Timeout = *p.Timeout
	}
	if p.CPUs != nil {
		s.CPUs = *p.CPUs
	}
	if p.MemoryMB != nil {
		s.MemoryMB = *p.MemoryMB
	}
	if p.ScratchFS != nil {
		s.ScratchFS = *p.ScratchFS
	}
	if p.CrashCheck != nil {
		s.CrashCheck = *p.CrashCheck
	}
	if p.Faults != nil {
		s.Faults = append([]string(nil), (*p.Faults)...)
		s.FaultProbability = nil
		if p.FaultProbability != nil && len(*p.FaultProbability) > 0 {
			s.FaultProbability = maps.Clone(*p.FaultProbability)
		}
	}
	if p.Init != nil {
		s.Init = *p.Init
	}
	if p.Cgroup != nil {
		s.Cgroup = *p.Cgroup
	}
	if p.Packages != nil {
		s.Packages = PackageChanges{Add: slices.Clone(p.Packages.Add), Remove: slices.Clone(p.Packages.Remove)}
	}
}

// empty reports whether no field is set.
func (p SettingsPatch) empty() bool { return p == SettingsPatch{} }

// DefaultSettings are the settings of a cell the spec says nothing about:
// all probes, a 30 s soak, one repeat, a 15 min timeout, 2 CPUs and 2 GiB.
func DefaultSettings() Settings {
	return Settings{
		Probes:   Probes(),
		Soak:     30 * time.Second,
		Repeats:  1,
		Timeout:  15 * time.Minute,
		CPUs:     2,
		MemoryMB: 2048,
	}
}

// Load reads, decodes and validates the spec at path. Every problem is
// reported, joined with errors.Join; each is a *SpecError naming
// file:line:column and the offending key.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &SpecError{File: path, Msg: fmt.Sprintf("read spec: %v", errors.Unwrap(err))}
	}
	return Parse(path, data)
}

// Parse decodes and validates spec text; name is used in error messages and
// relative local kernel paths are resolved against its directory.
func Parse(name string, data []byte) (*Spec, error) {
	s, decodeErrs := decode(name, data)
	if s == nil {
		return nil, errors.Join(decodeErrs...)
	}
	s.resolvePaths(filepath.Dir(name))
	if err := errors.Join(append(decodeErrs, s.validate(badPaths(decodeErrs))...)...); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks a spec built in code (Load already validates).
func (s *Spec) Validate() error {
	return errors.Join(s.validate(nil)...)
}

// resolvePaths makes relative local kernel paths relative to dir.
func (s *Spec) resolvePaths(dir string) {
	for i := range s.Axes.Kernel {
		k := &s.Axes.Kernel[i]
		for _, p := range []*string{&k.Vmlinuz, &k.Modules} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
}

// position is a place in the spec file.
type position struct{ line, column int }

// errAt builds a *SpecError for key, at the position of key or of its
// nearest ancestor that has one.
func (s *Spec) errAt(key, format string, args ...any) error {
	var p position
	for k := key; ; k = parentKey(k) {
		if p = s.pos[k]; p.line != 0 || k == "" {
			break
		}
	}
	return &SpecError{File: s.File, Line: p.line, Column: p.column, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// parentKey strips the last element of a key path:
// "axes.kernel[1].version" → "axes.kernel[1]" → "axes.kernel" → "axes" → "".
func parentKey(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		switch key[i] {
		case '.':
			return key[:i]
		case '[':
			return key[:i]
		}
	}
	return ""
}
