// Package iowork is the IO probe's workload. It runs inside a probe
// container and writes self-describing blocks (package block) in mixed
// patterns — large sequential writes, random overwrites, many small files,
// fsync and fdatasync, rename storms, hardlinks, truncation, deletes — into
// each of its directories (one in the container's writable layer, i.e. the
// storage driver under test, one in a volume). In the writable layer it also
// modifies files of a lower image layer (copy-up) and deletes some
// (whiteouts). It verifies everything it wrote and writes records
// (package record) with bytes written and verified, IOPS, latency
// percentiles and every mismatch.
//
// Every state acknowledged by fsync is appended to a state journal (fsynced),
// so that Verify, run after a power cut, can tell "promised and lost" (a
// mismatch against the journal) from "lost but never promised" (not in the
// journal, not checked).
package iowork

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/probes/block"
	"github.com/matrixctl/matrixctl/probes/record"
	"github.com/matrixctl/matrixctl/probes/stats"
)

// Lower-layer files: the probe image carries LowerCount files of LowerBlocks
// blocks each under LowerDir, written with LowerSeed and generation 0.
const (
	LowerDir    = "/lower"
	LowerCount  = 6
	LowerBlocks = 8
	LowerSeed   = 0x6c6f776572 // "lower"
)

// LowerFile describes one lower-layer file.
type LowerFile struct {
	Name string // relative to LowerDir
	ID   uint64
	Data []byte
}

// LowerFiles returns the lower-layer files the probe image must carry.
func LowerFiles() []LowerFile {
	out := make([]LowerFile, LowerCount)
	for i := range out {
		id := uint64(0x10000 + i)
		data := make([]byte, LowerBlocks*block.Size)
		for b := 0; b < LowerBlocks; b++ {
			block.Fill(data[b*block.Size:(b+1)*block.Size], block.Header{FileID: id, Offset: uint64(b * block.Size), Seed: LowerSeed})
		}
		out[i] = LowerFile{Name: fmt.Sprintf("lower-%d", i), ID: id, Data: data}
	}
	return out
}

// Config is one IO probe run.
type Config struct {
	// Dirs are the workload directories (created if missing).
	Dirs []string
	// Lower is the directory with the image's lower-layer files; empty skips copy-up/whiteout.
	Lower string
	// Journal is the state journal's path (on durable storage, e.g. the volume).
	Journal  string
	Duration time.Duration
	// Intensity scales sizes and counts (1 = light).
	Intensity int
	Seed      uint64
	Out       *record.Writer
}

// file is the expected state of one file; hardlinks share it.
type file struct {
	id   uint64
	seed uint64
	gens []uint64
}

type workspace struct {
	cfg   Config
	dir   string
	src   string
	j     *journal
	rng   *rand.Rand
	files map[string]*file // expected content per path
	gone  map[string]bool  // paths that must not exist
	ids   *uint64Counter

	written, verified  int64
	writeOps, fsyncOps int64
	writeLat, fsyncLat stats.Latencies
	mismatches         int
	elapsed            time.Duration
	buf                []byte
}

type uint64Counter struct {
	mu sync.Mutex
	n  uint64
}

func (c *uint64Counter) next() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

// maxMismatchRecords bounds the mismatch records per directory; the count stays exact.
const maxMismatchRecords = 200

// Run runs the workload and its verification. ok is false when any
// mismatch was found; err is an operational failure (e.g. ENOSPC, EIO),
// which is recorded too.
func Run(ctx context.Context, cfg Config) (ok bool, err error) {
	cfg.Intensity = max(cfg.Intensity, 1)
	j, err := openJournal(cfg.Journal)
	if err != nil {
		return false, err
	}
	defer j.close()
	ids := &uint64Counter{n: 0x100000}
	deadline := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	results := make([]error, len(cfg.Dirs))
	spaces := make([]*workspace, len(cfg.Dirs))
	for i, dir := range cfg.Dirs {
		w := &workspace{
			cfg: cfg, dir: dir, src: "io:" + dir, j: j, ids: ids,
			rng:   rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			files: map[string]*file{}, gone: map[string]bool{},
			buf: make([]byte, 16*block.Size),
		}
		spaces[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.run(ctx, deadline, i == 0 && cfg.Lower != "")
		}()
	}
	wg.Wait()
	ok = true
	total := map[string]float64{}
	for i, w := range spaces {
		if results[i] != nil {
			cfg.Out.Error(w.src, "%v", results[i])
			ok = false
		}
		if w.mismatches > 0 {
			ok = false
		}
		for k, v := range w.metrics() {
			if strings.HasSuffix(k, "_us") {
				total[k] = max(total[k], v)
				continue
			}
			total[k] += v
		}
	}
	msg := "all blocks verified"
	if !ok {
		msg = "integrity or IO failure"
	}
	cfg.Out.Summary(ok, total, msg)
	return ok, errors.Join(results...)
}

func (w *workspace) metrics() map[string]float64 {
	m := map[string]float64{
		"bytes_written":  float64(w.written),
		"bytes_verified": float64(w.verified),
		"write_ops":      float64(w.writeOps),
		"fsync_ops":      float64(w.fsyncOps),
		"mismatches":     float64(w.mismatches),
		"files":          float64(len(w.files)),
	}
	w.writeLat.Into(m, "write_latency")
	w.fsyncLat.Into(m, "fsync_latency")
	if el := w.elapsed.Seconds(); el > 0 {
		m["write_iops"] = float64(w.writeOps) / el
		m["fsync_iops"] = float64(w.fsyncOps) / el
		m["write_mb_per_s"] = float64(w.written) / el / 1e6
	}
	return m
}

func (w *workspace) run(ctx context.Context, deadline time.Time, lower bool) error {
	start := time.Now()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	if lower {
		if err := w.lowerLayer(); err != nil {
			return fmt.Errorf("lower layer: %w", err)
		}
	}
	for round := 0; round == 0 || (time.Now().Before(deadline) && ctx.Err() == nil); round++ {
		if err := w.round(round); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		w.verifyAll()
		// a progress record per round, so a killed probe leaves evidence
		w.elapsed = time.Since(start)
		m := w.metrics()
		m["round"] = float64(round)
		if err := w.cfg.Out.Metric(w.src, m); err != nil {
			return err
		}
	}
	w.elapsed = time.Since(start)
	return w.cfg.Out.Metric(w.src, w.metrics())
}

// lowerLayer verifies the image's lower files, then copies some up by
// modifying them and whites some out by deleting them.
func (w *workspace) lowerLayer() error {
	for i, lf := range LowerFiles() {
		p := filepath.Join(w.cfg.Lower, lf.Name)
		f := &file{id: lf.ID, seed: LowerSeed, gens: make([]uint64, LowerBlocks)}
		w.files[p] = f
		w.verifyFile(p, f)
		switch i % 3 {
		case 0: // copy-up: overwrite one block
			if err := w.overwrite(p, f, []int{1}); err != nil {
				return err
			}
		case 1: // whiteout
			if err := w.remove(p); err != nil {
				return err
			}
		}
	}
	return syncDir(filepath.Join(w.cfg.Lower, "x"))
}

func (w *workspace) newFile(blocks int) *file {
	return &file{id: w.ids.next(), seed: w.cfg.Seed, gens: make([]uint64, blocks)}
}

func (w *workspace) round(r int) error {
	n := w.cfg.Intensity
	// 1. large sequential file
	seq := filepath.Join(w.dir, fmt.Sprintf("seq-%d", r))
	sf := w.newFile(256 * n)
	for i := range sf.gens {
		sf.gens[i] = 1
	}
	if err := w.create(seq, sf, true); err != nil {
		return err
	}
	// 2. random overwrites with periodic fdatasync + promise
	var picks []int
	for i := 0; i < 64*n; i++ {
		picks = append(picks, w.rng.IntN(len(sf.gens)))
	}
	if err := w.overwrite(seq, sf, picks); err != nil {
		return err
	}
	// 3. many small files
	sdir := filepath.Join(w.dir, fmt.Sprintf("small-%d", r))
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return err
	}
	var small []string
	for i := 0; i < 32*n; i++ {
		p := filepath.Join(sdir, fmt.Sprintf("f-%d", i))
		f := w.newFile(1 + w.rng.IntN(4))
		if err := w.create(p, f, i%4 == 0); err != nil {
			return err
		}
		small = append(small, p)
	}
	if err := w.promiseDir(sdir, small); err != nil {
		return err
	}
	// 4. rename storm
	for k := 0; k < 3; k++ {
		for i, p := range small {
			np := filepath.Join(sdir, fmt.Sprintf("r%d-%d", k, i))
			if err := w.rename(p, np); err != nil {
				return err
			}
			small[i] = np
		}
	}
	if err := w.promiseDir(sdir, small); err != nil {
		return err
	}
	// 5. hardlinks, then a write through the link
	var links []string
	for i := 0; i < len(small); i += 4 {
		lp := small[i] + ".lnk"
		if err := os.Link(small[i], lp); err != nil {
			return fmt.Errorf("link: %w", err)
		}
		w.files[lp] = w.files[small[i]]
		delete(w.gone, lp)
		if err := w.overwrite(lp, w.files[lp], []int{0}); err != nil {
			return err
		}
		links = append(links, lp)
	}
	if err := w.promiseDir(sdir, append(append([]string(nil), small...), links...)); err != nil {
		return err
	}
	// 6. truncation to half
	if err := w.truncate(seq, sf, len(sf.gens)/2); err != nil {
		return err
	}
	// 7. deletes: every other small file, and the sequential file of two rounds ago
	for i := 1; i < len(small); i += 2 {
		if err := w.remove(small[i]); err != nil {
			return err
		}
	}
	if r >= 2 {
		if err := w.remove(filepath.Join(w.dir, fmt.Sprintf("seq-%d", r-2))); err != nil {
			return err
		}
	}
	return syncDir(filepath.Join(sdir, "x"))
}

// create writes f to a new file at p and, when sync is set, fsyncs it and its
// directory and promises it.
func (w *workspace) create(p string, f *file, sync bool) error {
	fd, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer fd.Close()
	w.files[p] = f
	delete(w.gone, p)
	for b := 0; b < len(f.gens); b += 16 {
		if err := w.writeBlocks(fd, f, b, min(16, len(f.gens)-b)); err != nil {
			return err
		}
	}
	if !sync {
		return nil
	}
	if err := w.fsync(fd, false); err != nil {
		return err
	}
	if err := syncDir(p); err != nil {
		return err
	}
	return w.j.promise(p, f, f.seed)
}

func (w *workspace) writeBlocks(fd *os.File, f *file, first, n int) error {
	b := w.buf[:n*block.Size]
	for i := 0; i < n; i++ {
		blk := first + i
		block.Fill(b[i*block.Size:(i+1)*block.Size], block.Header{FileID: f.id, Offset: uint64(blk * block.Size), Generation: f.gens[blk], Seed: f.seed})
	}
	start := time.Now()
	_, err := fd.WriteAt(b, int64(first*block.Size))
	w.writeLat.Add(time.Since(start))
	if err != nil {
		return fmt.Errorf("write %s at %d: %w", fd.Name(), first*block.Size, err)
	}
	w.writeOps++
	w.written += int64(len(b))
	return nil
}

func (w *workspace) fsync(fd *os.File, data bool) error {
	start := time.Now()
	var err error
	if data {
		err = fdatasync(fd)
	} else {
		err = fd.Sync()
	}
	w.fsyncLat.Add(time.Since(start))
	w.fsyncOps++
	if err != nil {
		return fmt.Errorf("fsync %s: %w", fd.Name(), err)
	}
	return nil
}

// overwrite bumps the generation of each picked block and rewrites it,
// fdatasyncing and promising every 16 writes and at the end.
func (w *workspace) overwrite(p string, f *file, picks []int) error {
	fd, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer fd.Close()
	for i, b := range picks {
		f.gens[b]++
		if err := w.writeBlocks(fd, f, b, 1); err != nil {
			return err
		}
		if (i+1)%16 == 0 || i == len(picks)-1 {
			if err := w.fsync(fd, true); err != nil {
				return err
			}
			if err := w.j.promise(p, f, f.seed); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *workspace) promiseDir(dir string, paths []string) error {
	for _, p := range paths {
		fd, err := os.Open(p)
		if err != nil {
			return err
		}
		err = w.fsync(fd, false)
		fd.Close()
		if err != nil {
			return err
		}
	}
	if err := syncDir(filepath.Join(dir, "x")); err != nil {
		return err
	}
	for _, p := range paths {
		if err := w.j.promise(p, w.files[p], w.files[p].seed); err != nil {
			return err
		}
	}
	return nil
}

func (w *workspace) rename(from, to string) error {
	if err := w.j.withdraw(from); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	w.files[to] = w.files[from]
	delete(w.files, from)
	delete(w.gone, to)
	w.gone[from] = true
	return nil
}

func (w *workspace) remove(p string) error {
	if err := w.j.withdraw(p); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	delete(w.files, p)
	w.gone[p] = true
	return nil
}

func (w *workspace) truncate(p string, f *file, blocks int) error {
	if err := w.j.withdraw(p); err != nil {
		return err
	}
	fd, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer fd.Close()
	if err := fd.Truncate(int64(blocks * block.Size)); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	f.gens = f.gens[:blocks]
	if err := w.fsync(fd, false); err != nil {
		return err
	}
	return w.j.promise(p, f, f.seed)
}

// verifyAll reads back every expected file and checks that deleted ones are gone.
func (w *workspace) verifyAll() {
	paths := make([]string, 0, len(w.files))
	for p := range w.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		w.verifyFile(p, w.files[p])
	}
	for p := range w.gone {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			w.mismatch(record.Mismatch{File: p, Kind: string(block.Unexpected), Expected: "deleted", Found: fmt.Sprintf("lstat: %v", err)})
		}
	}
}

func (w *workspace) verifyFile(p string, f *file) {
	n, err := verifyBlocks(p, f.id, f.seed, runs(f.gens), false, w.mismatch)
	w.verified += n
	if err != nil {
		w.cfg.Out.Error(w.src, "verify %s: %v", p, err)
		w.mismatches++
	}
	if st, err := os.Stat(p); err == nil && st.Size() != int64(len(f.gens)*block.Size) {
		w.mismatch(record.Mismatch{File: p, Offset: st.Size(), Kind: "size", Expected: fmt.Sprint(len(f.gens) * block.Size), Found: fmt.Sprint(st.Size())})
	}
}

func (w *workspace) mismatch(m record.Mismatch) {
	w.mismatches++
	if w.mismatches <= maxMismatchRecords {
		w.cfg.Out.MismatchRecord(w.src, m)
	}
}

// verifyBlocks checks the blocks rs describes in the file at p. Under
// postCrash a newer generation than expected is fine (an unpromised write
// that landed). It returns the bytes verified.
func verifyBlocks(p string, id, seed uint64, rs [][3]uint64, postCrash bool, report func(record.Mismatch)) (int64, error) {
	fd, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		report(record.Mismatch{File: p, Kind: string(block.MissingFile), Expected: fmt.Sprintf("file=%#x", id), Found: "no such file", Promised: postCrash})
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer fd.Close()
	var n int64
	buf := make([]byte, block.Size)
	for _, r := range rs {
		for b := r[0]; b < r[0]+r[1]; b++ {
			off := int64(b) * block.Size
			k, err := fd.ReadAt(buf, off)
			if err != nil && !isEOF(err) {
				return n, fmt.Errorf("read %s at %d: %w", p, off, err)
			}
			want := block.Header{FileID: id, Offset: uint64(off), Generation: r[2], Seed: seed}
			kind, got := block.Check(buf[:k], want)
			n += int64(k)
			if kind == block.OK || (postCrash && kind == block.FutureGeneration) {
				continue
			}
			report(record.Mismatch{File: p, Offset: off, Kind: string(kind), Expected: want.String(), Found: block.Describe(kind, got), Promised: postCrash})
		}
	}
	return n, nil
}

// VerifyConfig is a verification of the state journal, e.g. after a power cut.
type VerifyConfig struct {
	Journal string
	// Prefix limits verification to paths under it (e.g. only the volume); empty checks all.
	Prefix string
	Out    *record.Writer
}

// Verify checks every state the journal promised and reports each
// "promised and lost" block as a mismatch with Promised set. Blocks and files
// the journal never promised are not checked. ok is false on any mismatch.
func Verify(cfg VerifyConfig) (bool, error) {
	src := "io-verify:" + cfg.Prefix
	jf, err := os.Open(cfg.Journal)
	if err != nil {
		cfg.Out.Error(src, "open journal: %v", err)
		return false, err
	}
	state, order, err := readJournal(jf)
	jf.Close()
	if err != nil {
		cfg.Out.Error(src, "%v", err)
		return false, err
	}
	var mismatches, files, withdrawn int
	var verified int64
	report := func(m record.Mismatch) {
		mismatches++
		if mismatches <= maxMismatchRecords {
			cfg.Out.MismatchRecord(src, m)
		}
	}
	var errs []error
	for _, p := range order {
		if cfg.Prefix != "" && !strings.HasPrefix(p, cfg.Prefix) {
			continue
		}
		e := state[p]
		if e.Withdraw {
			withdrawn++
			continue
		}
		files++
		n, err := verifyBlocks(p, e.ID, e.Seed, e.Runs, true, report)
		verified += n
		if err != nil {
			errs = append(errs, err)
			cfg.Out.Error(src, "%v", err)
		}
	}
	ok := mismatches == 0 && len(errs) == 0
	cfg.Out.Summary(ok, map[string]float64{
		"promised_files":  float64(files),
		"withdrawn_files": float64(withdrawn),
		"bytes_verified":  float64(verified),
		"mismatches":      float64(mismatches),
	}, "post-crash verification of promised state")
	return ok, errors.Join(errs...)
}
