package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path so that a reader (or a controller that
// restarts after SIGKILL or power loss) sees either the old or the new
// content: write a temp file beside it, fsync, rename, fsync the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// WriteJSONAtomic writes v as indented JSON with WriteFileAtomic.
func WriteJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// artifactFile is a run artifact written as it grows (console.log,
// probes.jsonl) and made durable by Finish: written under a temp name,
// fsynced and renamed into place when the run ends, so a file under its
// final name is always complete.
type artifactFile struct {
	f     *os.File
	final string
}

func createArtifact(path string) (*artifactFile, error) {
	f, err := os.Create(path + ".partial")
	if err != nil {
		return nil, fmt.Errorf("create artifact: %w", err)
	}
	return &artifactFile{f: f, final: path}, nil
}

func (a *artifactFile) Write(p []byte) (int, error) { return a.f.Write(p) }

// Finish fsyncs and renames the artifact to its final name.
func (a *artifactFile) Finish() error {
	if a.f == nil {
		return nil
	}
	f := a.f
	a.f = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("artifact %s: fsync: %w", a.final, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("artifact %s: %w", a.final, err)
	}
	if err := os.Rename(f.Name(), a.final); err != nil {
		return fmt.Errorf("artifact %s: %w", a.final, err)
	}
	return syncDir(filepath.Dir(a.final))
}
