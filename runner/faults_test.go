package runner

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

// TestFaultTableCoversMatrixFaults: every fault the spec accepts is either
// implemented by the runner or listed here as not implemented yet, so a
// cell naming it becomes unsupported with that reason instead of passing.
func TestFaultTableCoversMatrixFaults(t *testing.T) {
	notYet := map[string]bool{}
	for _, name := range matrix.Faults() {
		_, ok := faultTable[name]
		if ok == notYet[name] {
			t.Errorf("fault %s: implemented %v, listed as not implemented %v", name, ok, notYet[name])
		}
	}
	for name := range faultTable {
		found := false
		for _, n := range matrix.Faults() {
			found = found || n == name
		}
		if !found {
			t.Errorf("fault %s is implemented but the spec does not accept it", name)
		}
	}
}

// TestFlipInodeTable makes a real ext4 image, finds group 0's inode table
// as dumpe2fs does, corrupts it, and e2fsck must then find errors.
func TestFlipInodeTable(t *testing.T) {
	testutil.RequiresBinary(t, "mkfs.ext4", "dumpe2fs", "e2fsck")
	img := filepath.Join(t.TempDir(), "scratch.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-F", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dump, err := exec.Command("dumpe2fs", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v: %s", err, dump)
	}
	m := regexp.MustCompile(`Inode table at (\d+)-`).FindSubmatch(dump)
	if m == nil {
		t.Fatalf("no inode table in dumpe2fs output:\n%s", dump)
	}
	want, _ := strconv.ParseInt(string(m[1]), 10, 64)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := ext4InodeTable(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if loc.Block != want {
		t.Fatalf("inode table at block %d, dumpe2fs says %d", loc.Block, want)
	}
	if err := exec.Command("e2fsck", "-fn", img).Run(); err != nil {
		t.Fatalf("fresh image not clean: %v", err)
	}
	fs, err := corruptScratch([]string{"flip-bytes"}, Scratch{Path: img, FS: "ext4"})
	if err != nil || len(fs) != 1 {
		t.Fatalf("corruptScratch: %v %+v", err, fs)
	}
	t.Log(fs[0].Title)
	res, err := FSChecker().Check(context.Background(), Scratch{Path: img, FS: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Clean {
		t.Fatalf("e2fsck found the corrupted image clean:\n%s", res.Output)
	}
	if _, err := corruptScratch([]string{"flip-bytes"}, Scratch{Path: img, FS: "xfs"}); err == nil {
		t.Error("flip-bytes on xfs: want an error")
	}
}

// FuzzExt4InodeTable: ext4InodeTable reads outside input (an image the
// guest wrote) and must never panic.
func FuzzExt4InodeTable(f *testing.F) {
	sb := make([]byte, 8192)
	sb[1024+0x38], sb[1024+0x39] = 0x53, 0xEF
	sb[1024+0x18] = 2
	sb[4096+8] = 9
	f.Add(sb)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		loc, err := ext4InodeTable(bytes.NewReader(b))
		if err == nil && (loc.BlockSize < 1024 || loc.Offset != loc.Block*loc.BlockSize) {
			t.Fatalf("bad location %+v", loc)
		}
	})
}

// TestDrawFaults: a probabilistic fault fires in about its share of runs,
// always-faults always, and the same (seed, cell, repeat) decides the same.
func TestDrawFaults(t *testing.T) {
	c := matrix.Cell{ID: "k6.1-x-fault-hung-task-fault-sysrq-panic-p30", Settings: matrix.Settings{
		Faults: []string{"sysrq-panic", "hung-task"}, FaultProbability: map[string]float64{"sysrq-panic": 0.3}}}
	const n = 4000
	fired := 0
	for rep := 1; rep <= n; rep++ {
		got, draws := drawFaults(42, c, rep)
		if !slices.Contains(got.Settings.Faults, "hung-task") || len(draws) != 1 || draws[0].Fault != "sysrq-panic" {
			t.Fatalf("repeat %d: faults %v, draws %+v", rep, got.Settings.Faults, draws)
		}
		if draws[0].Injected != slices.Contains(got.Settings.Faults, "sysrq-panic") {
			t.Fatalf("repeat %d: draw %+v disagrees with faults %v", rep, draws[0], got.Settings.Faults)
		}
		if draws[0].Injected {
			fired++
		}
		if _, again := drawFaults(42, c, rep); again[0] != draws[0] {
			t.Fatalf("repeat %d: not reproducible: %+v then %+v", rep, draws[0], again[0])
		}
	}
	if share := float64(fired) / n; share < 0.27 || share > 0.33 {
		t.Errorf("fired in %.3f of runs, want about 0.30", share)
	}
	if len(c.Settings.Faults) != 2 {
		t.Errorf("drawFaults changed the caller's cell: %v", c.Settings.Faults)
	}
	same := 0
	for rep := 1; rep <= 200; rep++ {
		_, a := drawFaults(1, c, rep)
		_, b := drawFaults(2, c, rep)
		if a[0].Injected == b[0].Injected {
			same++
		}
	}
	if same == 200 {
		t.Error("two seeds decided every run the same")
	}
}

// TestCalibrator: the calibrator measures before, after and in between,
// and its mean lies between the smallest and the largest measurement.
func TestCalibrator(t *testing.T) {
	c := startCalibrator()
	got := c.finish()
	if got.Samples < 2 || got.CPUMiBps <= 0 || got.Before <= 0 || got.After <= 0 ||
		got.CPUMiBps < min(got.Before, got.After)*0.999 && got.Samples == 2 {
		t.Errorf("calibration = %+v", got)
	}
}
