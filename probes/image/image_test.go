package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

func spec() Spec {
	return Spec{
		Repo:       "matrixctl/test",
		Files:      []File{{Path: "bin/x", Mode: 0o755, Data: []byte("binary")}, {Path: "lower/a", Data: []byte("aaaa")}},
		Dirs:       []string{"data/layer"},
		Entrypoint: []string{"/bin/x"},
		Labels:     map[string]string{"k": "v"},
	}
}

func TestReproducible(t *testing.T) {
	a, ia, err := Build(spec())
	if err != nil {
		t.Fatal(err)
	}
	b, ib, err := Build(spec())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || ia != ib {
		t.Fatalf("two builds differ: %v vs %v", ia, ib)
	}
	s := spec()
	s.Files[0].Data = []byte("binary2")
	_, ic, _ := Build(s)
	if ic.ID == ia.ID || ic.Tag == ia.Tag {
		t.Fatalf("different content, same identity: %v", ic)
	}
}

func TestArchiveLayout(t *testing.T) {
	data, info, err := Build(spec())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var m []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest: %v %s", err, files["manifest.json"])
	}
	if m[0].RepoTags[0] != info.Tag || "sha256:"+m[0].Config[:64] != info.ID {
		t.Fatalf("manifest %+v vs info %+v", m[0], info)
	}
	layer := files[m[0].Layers[0]]
	var names []string
	tr = tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d mtime %v", h.Name, h.Uid, h.ModTime)
		}
	}
	want := []string{"bin/", "bin/x", "data/", "data/layer/", "lower/", "lower/a"}
	if len(names) != len(want) {
		t.Fatalf("layer entries %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("layer entries %v, want %v", names, want)
		}
	}
}

func TestBadSpec(t *testing.T) {
	for _, s := range []Spec{
		{Repo: "Upper"},
		{Repo: "x:tag"},
		{Repo: "x", Files: []File{{Path: "../escape"}}},
		{Repo: "x", Files: []File{{Path: "a"}, {Path: "/a"}}},
	} {
		if _, _, err := Build(s); err == nil {
			t.Errorf("Build(%+v) succeeded", s)
		}
	}
}
