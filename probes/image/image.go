// Package image writes Docker image tarballs (the `docker save` /
// docker-archive format: manifest.json, an image config and one layer tar)
// without any registry or build daemon, and loads them through the Engine
// API. Output is reproducible: entries are sorted, timestamps, owners and
// modes are fixed, so the same files always give the same bytes, the same
// image ID and the same tag.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// epoch is every entry's timestamp and the image's creation time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one regular file in the layer.
type File struct {
	// Path is relative to the root, e.g. "matrixctl-probe" or "lower/a".
	Path string
	Mode int64
	Data []byte
}

// Spec describes a single-layer image.
type Spec struct {
	// Repo is the repository part of the tag, e.g. "matrixctl/probe".
	Repo string
	// Files go into the layer; parent directories are created.
	Files []File
	// Dirs are extra empty directories, e.g. "data/layer".
	Dirs       []string
	Entrypoint []string
	Labels     map[string]string
}

// Info identifies a written image.
type Info struct {
	// ID is the image ID, "sha256:" + the config digest.
	ID string
	// Tag is Repo + ":" + the first 12 hex digits of the config digest.
	Tag string
	// Size is the tarball's length in bytes.
	Size int64
}

type config struct {
	Architecture string       `json:"architecture"`
	OS           string       `json:"os"`
	Created      time.Time    `json:"created"`
	Config       imageConfig  `json:"config"`
	RootFS       rootFS       `json:"rootfs"`
	History      []historyRow `json:"history"`
}

type imageConfig struct {
	Env        []string          `json:"Env"`
	Entrypoint []string          `json:"Entrypoint"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type historyRow struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Build returns the image tarball for spec.
func Build(spec Spec) ([]byte, Info, error) {
	if spec.Repo == "" || strings.ContainsAny(spec.Repo, ": ") || strings.ToLower(spec.Repo) != spec.Repo {
		return nil, Info{}, fmt.Errorf("image repo %q: want a lowercase name without tag", spec.Repo)
	}
	layer, err := buildLayer(spec)
	if err != nil {
		return nil, Info{}, err
	}
	layerSum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(layerSum[:])
	cfg, err := json.Marshal(config{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      epoch,
		Config:       imageConfig{Env: []string{"PATH=/"}, Entrypoint: spec.Entrypoint, Labels: spec.Labels},
		RootFS:       rootFS{Type: "layers", DiffIDs: []string{"sha256:" + layerHex}},
		History:      []historyRow{{Created: epoch, CreatedBy: "matrixctl probes/image"}},
	})
	if err != nil {
		return nil, Info{}, err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgHex := hex.EncodeToString(cfgSum[:])
	tag := spec.Repo + ":" + cfgHex[:12]
	manifest, err := json.Marshal([]manifestEntry{{
		Config: cfgHex + ".json", RepoTags: []string{tag}, Layers: []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return nil, Info{}, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	entries := []struct {
		name string
		data []byte
	}{
		{cfgHex + ".json", cfg},
		{layerHex + "/layer.tar", layer},
		{"manifest.json", manifest},
	}
	if err := writeDir(tw, layerHex+"/"); err != nil {
		return nil, Info{}, err
	}
	for _, e := range entries {
		if err := writeFile(tw, e.name, 0o644, e.data); err != nil {
			return nil, Info{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, Info{}, err
	}
	return out.Bytes(), Info{ID: "sha256:" + cfgHex, Tag: tag, Size: int64(out.Len())}, nil
}

func buildLayer(spec Spec) ([]byte, error) {
	dirs := map[string]bool{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	files := map[string]File{}
	for _, f := range spec.Files {
		p := path.Clean(strings.TrimPrefix(f.Path, "/"))
		if p == "." || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("image file path %q: not inside the root", f.Path)
		}
		if _, dup := files[p]; dup {
			return nil, fmt.Errorf("image file path %q: listed twice", f.Path)
		}
		files[p] = f
		addParents(p)
	}
	for _, d := range spec.Dirs {
		p := path.Clean(strings.TrimPrefix(d, "/"))
		dirs[p] = true
		addParents(p)
	}
	type ent struct {
		name string
		dir  bool
	}
	var all []ent
	for d := range dirs {
		all = append(all, ent{d, true})
	}
	for p := range files {
		all = append(all, ent{p, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range all {
		var err error
		if e.dir {
			err = writeDir(tw, e.name+"/")
		} else {
			f := files[e.name]
			err = writeFile(tw, e.name, f.Mode, f.Data)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR})
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if mode == 0 {
		mode = 0o644
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

// Loader is the part of the Engine API Load needs.
type Loader interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
}

// LoadError is an error the daemon reported while loading.
type LoadError struct {
	Message string
}

func (e *LoadError) Error() string { return "image load: " + e.Message }

// Load loads an image tarball into the daemon and drains its progress
// stream, returning a *LoadError when the daemon reported a failure in it.
func Load(ctx context.Context, cli Loader, tarball io.Reader) error {
	resp, err := cli.ImageLoad(ctx, tarball, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("image load: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("image load: read response: %w", err)
		}
		if msg.Error != "" {
			return &LoadError{Message: msg.Error}
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return &LoadError{Message: msg.ErrorDetail.Message}
		}
	}
}
