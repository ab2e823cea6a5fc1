package iowork

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/probes/block"
	"github.com/matrixctl/matrixctl/probes/record"
)

// TestRunVerifyCorrupt runs the workload in temp directories (with a lower
// directory standing in for the image layer), then corrupts blocks and
// checks both verification paths name them.
func TestRunVerifyCorrupt(t *testing.T) {
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	os.MkdirAll(lower, 0o755)
	for _, lf := range LowerFiles() {
		if err := os.WriteFile(filepath.Join(lower, lf.Name), lf.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	journal := filepath.Join(dir, "journal.jsonl")
	ok, err := Run(context.Background(), Config{
		Dirs: []string{filepath.Join(dir, "layer"), filepath.Join(dir, "vol")}, Lower: lower,
		Journal: journal, Duration: 10 * time.Millisecond, Intensity: 1, Seed: 42,
		Out: record.NewWriter(&out, "io"),
	})
	if !ok || err != nil {
		t.Fatalf("Run: ok=%v err=%v\n%s", ok, err, out.String())
	}
	// whiteout and copy-up happened
	if _, err := os.Stat(filepath.Join(lower, "lower-1")); !os.IsNotExist(err) {
		t.Errorf("lower-1 not deleted: %v", err)
	}
	out.Reset()
	if ok, err := Verify(VerifyConfig{Journal: journal, Out: record.NewWriter(&out, "io")}); !ok || err != nil {
		t.Fatalf("Verify clean: ok=%v err=%v\n%s", ok, err, out.String())
	}

	// stale generation: rewrite block 1 of lower-0 (copied up to gen 1) with gen 0
	p := filepath.Join(lower, "lower-0")
	b := make([]byte, block.Size)
	block.Fill(b, block.Header{FileID: 0x10000, Offset: block.Size, Seed: LowerSeed})
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt(b, block.Size)
	f.Close()
	// missing file: delete a promised sequential file
	seq := filepath.Join(dir, "vol", "seq-0")
	os.Remove(seq)

	out.Reset()
	ok, err = Verify(VerifyConfig{Journal: journal, Out: record.NewWriter(&out, "io")})
	if ok || err != nil {
		t.Fatalf("Verify after damage: ok=%v err=%v", ok, err)
	}
	recs, _, rerr := record.ReadRecords(&out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	got := map[string]bool{}
	for _, r := range recs {
		if r.Mismatch != nil {
			got[r.Mismatch.File+"@"+r.Mismatch.Kind] = r.Mismatch.Promised
		}
	}
	for _, want := range []string{p + "@stale-generation", seq + "@missing-file"} {
		if !got[want] {
			t.Errorf("no promised mismatch %s in %v", want, got)
		}
	}
	// with a prefix only the volume is checked
	out.Reset()
	Verify(VerifyConfig{Journal: journal, Prefix: filepath.Join(dir, "layer"), Out: record.NewWriter(&out, "io")})
	if strings.Contains(out.String(), `"kind":"mismatch"`) {
		t.Errorf("prefix verification reported mismatches outside the prefix:\n%s", out.String())
	}
}

func TestJournalTornTailAndRuns(t *testing.T) {
	in := `{"p":"/a","id":1,"seed":2,"runs":[[0,4,1]]}
{"p":"/b","id":2,"seed":2,"runs":[[0,1,1]]}
{"p":"/a","w":true}
{"p":"/b","id":2,"se`
	st, order, err := readJournal(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || !st["/a"].Withdraw || st["/b"].Runs[0][1] != 1 {
		t.Fatalf("state %+v order %v", st, order)
	}
	if _, _, err := readJournal(strings.NewReader("garbage\n")); err == nil {
		t.Error("damaged middle line accepted")
	}
	if _, _, err := readJournal(strings.NewReader(`{"p":"/a","runs":[[0,99999999999,1]]}` + "\n")); err == nil {
		t.Error("implausible run accepted")
	}
	r := runs([]uint64{1, 1, 2, 2, 2, 1})
	if len(r) != 3 || r[1] != [3]uint64{2, 3, 2} {
		t.Fatalf("runs = %v", r)
	}
}

func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(`{"p":"/a","id":1,"seed":2,"runs":[[0,4,1]]}` + "\n" + `{"p":"/a","w":true}` + "\n"))
	f.Add([]byte(`{"p":"/b","id":2,"runs":[[0,1,1],[1,3,2]]}` + "\n{\"p\""))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, order, err := readJournal(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(st) != len(order) {
			t.Fatalf("%d states, %d paths", len(st), len(order))
		}
		for _, e := range st {
			var n uint64
			for _, r := range e.Runs {
				n += r[1]
			}
			if n > maxJournalBlocks {
				t.Fatalf("accepted %d blocks", n)
			}
		}
	})
}

func TestPromised(t *testing.T) {
	j := `{"p":"/data/vol/io/a","id":1,"seed":2,"runs":[[0,3,1]]}
{"p":"/data/vol/io/b","id":3,"seed":2,"runs":[[0,1,1],[1,1,2]]}
{"p":"/data/vol/io/a","w":true}
{"p":"/data/vol/io/c","id":4,"seed":2}
{"p":"/data/vol/io/d","id":5,"seed":2,"runs":[[0,1,1]]`
	got, err := Promised(strings.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	want := []Promise{{Path: "/data/vol/io/b", Blocks: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Promised = %+v, want %+v (withdrawn, empty and torn entries dropped)", got, want)
	}
}
