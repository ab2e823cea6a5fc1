package vagrant

import (
	_ "embed"
	"fmt"
	"os"

	"github.com/goccy/go-yaml"

	"github.com/matrixctl/matrixctl/matrix"
)

// DefaultCatalog is the catalog shipped in this directory (boxes.yaml).
//
//go:embed boxes.yaml
var DefaultCatalog []byte

// Catalog maps (distro, kernel) to boxes.
type Catalog struct {
	Boxes []Entry `yaml:"boxes"`
}

// Entry is one box of the catalog.
type Entry struct {
	Name    string `yaml:"name"`
	Distro  string `yaml:"distro"`
	Kernel  string `yaml:"kernel"`
	Version string `yaml:"version"`
	// Build is set for boxes the project builds itself.
	Build *Build `yaml:"build"`
}

// Build says how a project-built box is made.
type Build struct {
	Suite       string `yaml:"suite"`
	KernelSuite string `yaml:"kernel_suite"`
}

// LoadCatalog reads a catalog file.
func LoadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCatalog(path, b)
}

// ParseCatalog decodes and checks a catalog; name is used in errors.
func ParseCatalog(name string, data []byte) (*Catalog, error) {
	var c Catalog
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", name, yaml.FormatError(err, false, true))
	}
	seen := map[string]bool{}
	for i, e := range c.Boxes {
		where := fmt.Sprintf("%s: boxes[%d]", name, i)
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("%s: no name", where)
		case seen[e.Name]:
			return nil, fmt.Errorf("%s: name %q appears twice", where, e.Name)
		case e.Distro == "" || e.Kernel == "":
			return nil, fmt.Errorf("%s (%s): distro and kernel are required", where, e.Name)
		case e.Build != nil && (e.Build.Suite == "" || e.Build.KernelSuite == ""):
			return nil, fmt.Errorf("%s (%s): build needs suite and kernel_suite", where, e.Name)
		case e.Build != nil && e.Version != "":
			return nil, fmt.Errorf("%s (%s): a built box has no version to pin", where, e.Name)
		}
		seen[e.Name] = true
	}
	return &c, nil
}

// Lookup returns the entry for cell: the one its kernel's box names, else
// the one for its distro and kernel line.
func (c *Catalog) Lookup(cell matrix.Cell) (*Entry, error) {
	for i, e := range c.Boxes {
		if cell.Kernel.Box != "" && e.Name == cell.Kernel.Box {
			return &c.Boxes[i], nil
		}
	}
	if cell.Kernel.Box != "" {
		return nil, fmt.Errorf("cell %s: box %q is not in the box catalog", cell.ID, cell.Kernel.Box)
	}
	for i, e := range c.Boxes {
		if e.Distro == cell.Distro.Name && e.Kernel == cell.Kernel.Version {
			return &c.Boxes[i], nil
		}
	}
	return nil, fmt.Errorf("cell %s: no box in the catalog for distro %s with kernel %s", cell.ID, cell.Distro.Name, cell.Kernel.Version)
}
