package runner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner/agentproto"
)

// Fault injection (matrix Settings.Faults, the fault-injection suite): a
// cell may name faults the runner injects on purpose, to prove that each
// real failure gets the verdict the taxonomy promises. Every fault is one
// row of faultTable: when the runner injects it and how. Normal cells have
// no faults and none of this runs.
//
// Expected verdicts (what the suite in runner/faults checks):
//
//	sysrq-panic   kernel-crash  echo c > /proc/sysrq-trigger a few seconds into the probes
//	sigstop       hang          SIGSTOP of the VM's process; the watchdog kills it
//	kill-dockerd  docker-failure SIGKILL of dockerd inside the guest during the probes
//	hung-task     hang          hung_task_timeout_secs=2, a writer on the scratch fs,
//	                            FIFREEZE of the scratch fs for hungTaskFreeze, then FITHAW:
//	                            the kernel's "task blocked for more than N seconds" report
//	                            is a hang finding while the VM stays alive (the taxonomy's
//	                            hang: "hung task / lockup / RCU stall with the VM alive")
//	flip-bytes    fs-corruption after a clean shutdown, random bytes over the first block of
//	                            the ext4 inode table (root inode included); the host
//	                            checker (e2fsck) finds the damage
//	blkdebug-eio  fs-corruption QEMU blkdebug on the scratch drive, armed through QMP a few
//	                            seconds into the probes (qemu.VM.InjectIOErrors): every read
//	                            and write fails with EIO; the kernel's I/O errors are io-error
//	                            findings, ext4's reaction (journal aborted, remounted
//	                            read-only) fs findings, and the probe's failing operation is
//	                            recorded
//	flip-data     data-loss     after the probes the IO probe writes and promises again, keeping
//	                            its volume; clean shutdown; 16 bytes inverted in block 0 of
//	                            the last file it promised, found with debugfs in the stopped
//	                            ext4 image; a boot on the same disk; the re-verification
//	                            names the file and offset (flipdata.go, crashcheck.go)
//	power-cut     pass          the crash-consistency check (crashcheck.go): SIGKILL of
//	                            QEMU while the IO probe writes, a boot on the same scratch
//	                            disk, every fsync-promised block verified, the checker
//	                            clean; data-loss if a promised block is lost

// FaultTarget is what a machine offers for fault injection. The QEMU
// machine implements it; a machine without it cannot run faulted cells.
type FaultTarget interface {
	// GuestCommand runs one guest agent command and waits for its reply.
	GuestCommand(ctx context.Context, c agentproto.Command) error
	// Freeze stops the machine's host process (SIGSTOP): a silent machine.
	Freeze() error
	// InjectIOErrors makes every later read and write of the scratch
	// drive fail with EIO and says what it armed.
	InjectIOErrors(ctx context.Context) (string, error)
}

// faultMoment is when the runner injects a fault.
type faultMoment int

const (
	// duringProbes: faultDelay after the probes started (inject).
	duringProbes faultMoment = iota
	// afterShutdown: on the scratch image after a clean shutdown, before
	// the host checker runs (corrupt).
	afterShutdown
	// asCrashCheck: the fault is the crash-consistency check itself (the
	// power cut, crashcheck.go), which runs after the probes.
	asCrashCheck
)

// faultSpec is one row of faultTable.
type faultSpec struct {
	at     faultMoment
	inject func(ctx context.Context, t FaultTarget) error
	// describe is inject for faults that say what they did.
	describe func(ctx context.Context, t FaultTarget) (string, error)
	// corrupt damages a stopped machine's scratch image and says where.
	corrupt func(s Scratch) (string, error)
}

// faultDelay is how long the probes run before a duringProbes fault: long
// enough that the probes are writing, short enough for a short soak.
const faultDelay = 3 * time.Second

// hungTaskFreeze is how long the hung-task fault keeps the scratch fs
// frozen: several hung_task_timeout_secs=2 periods, so the detector
// reports the blocked writer, well below the VM watchdog.
const hungTaskFreeze = 12 * time.Second

// guestScratch is where the guest agent mounts the scratch filesystem.
const guestScratch = "/var/lib/docker"

func guest(op agentproto.Op, arg, value string) func(context.Context, FaultTarget) error {
	return func(ctx context.Context, t FaultTarget) error {
		return t.GuestCommand(ctx, agentproto.Command{Op: op, Arg: arg, Value: value})
	}
}

// faultTable maps each fault the runner implements to its injection. Its
// keys are the names matrix.Faults() allows.
var faultTable = map[string]faultSpec{
	"sysrq-panic":  {at: duringProbes, inject: guest(agentproto.OpSysrq, "c", "")},
	"kill-dockerd": {at: duringProbes, inject: guest(agentproto.OpKillDockerd, "", "")},
	"sigstop":      {at: duringProbes, inject: func(_ context.Context, t FaultTarget) error { return t.Freeze() }},
	"blkdebug-eio": {at: duringProbes, describe: func(ctx context.Context, t FaultTarget) (string, error) { return t.InjectIOErrors(ctx) }},
	"hung-task": {at: duringProbes, inject: func(ctx context.Context, t FaultTarget) error {
		writer := guestScratch + "/matrixctl-fault-writer"
		steps := []agentproto.Command{
			{Op: agentproto.OpSysctl, Arg: "kernel.hung_task_timeout_secs", Value: "2"},
			{Op: agentproto.OpWriteLoop, Arg: writer, Value: fmt.Sprint(int((hungTaskFreeze + 5*time.Second) / time.Second))},
			{Op: agentproto.OpFreeze, Arg: guestScratch},
		}
		for _, c := range steps {
			if err := t.GuestCommand(ctx, c); err != nil {
				return err
			}
		}
		select {
		case <-time.After(hungTaskFreeze):
		case <-ctx.Done():
		}
		// Thaw even when the run ends early, so the clean shutdown can unmount.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return t.GuestCommand(tctx, agentproto.Command{Op: agentproto.OpThaw, Arg: guestScratch})
	}},
	"flip-bytes":  {at: afterShutdown, corrupt: flipInodeTable},
	powerCutFault: {at: asCrashCheck},
	flipDataFault: {at: asCrashCheck},
}

// ImplementedFaults lists the faults the runner can inject, sorted.
func ImplementedFaults() []string {
	out := make([]string, 0, len(faultTable))
	for name := range faultTable {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// faultRun is the injections of one attempt.
type faultRun struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	findings []results.Finding
	err      error // the harness could not inject a fault
}

// startFaults injects the cell's duringProbes faults in the background,
// faultDelay after it is called. wait returns once every injection ended.
func startFaults(ctx context.Context, m Machine, names []string) *faultRun {
	fr := &faultRun{}
	if len(names) == 0 {
		return fr
	}
	t, ok := m.(FaultTarget)
	if !ok {
		fr.err = &UnsupportedError{Reason: fmt.Sprintf("this provider cannot inject faults (%s)", strings.Join(names, ", "))}
		return fr
	}
	for _, name := range names {
		spec, ok := faultTable[name]
		if !ok {
			fr.err = &UnsupportedError{Reason: fmt.Sprintf("fault %q is not implemented by the runner (implemented: %s)", name, strings.Join(ImplementedFaults(), ", "))}
			return fr
		}
		if spec.at != duringProbes {
			continue // corruptScratch applies it
		}
		fr.wg.Add(1)
		go func() {
			defer fr.wg.Done()
			select {
			case <-time.After(faultDelay):
			case <-ctx.Done():
				fr.record(name, fmt.Errorf("not injected: the run ended first"))
				return
			}
			start := time.Now()
			var what string
			var err error
			if spec.describe != nil {
				what, err = spec.describe(ctx, t)
			} else {
				err = spec.inject(ctx, t)
			}
			fr.record(name, err)
			if err == nil {
				if what != "" {
					what = ": " + what
				}
				fr.mu.Lock()
				fr.findings[len(fr.findings)-1].Title += fmt.Sprintf("%s (%s into the probes, took %s)", what, faultDelay, time.Since(start).Round(time.Millisecond))
				fr.mu.Unlock()
			}
		}()
	}
	return fr
}

func (fr *faultRun) record(name string, err error) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	f := results.Finding{Source: "runner", Category: results.CatFaultInjected, Severity: results.SevInfo, Title: "injected fault " + name}
	if err != nil {
		f.Category, f.Severity, f.Title = results.CatFaultNotInjected, results.SevWarning, "fault "+name+": "+summaryLine(err.Error())
	}
	fr.findings = append(fr.findings, f)
}

// wait blocks until every injection ended and returns their findings and
// the harness error, if any.
func (fr *faultRun) wait() ([]results.Finding, error) {
	fr.wg.Wait()
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]results.Finding(nil), fr.findings...), fr.err
}

// corruptScratch applies the cell's afterShutdown faults to the scratch
// image of a machine that shut down cleanly; it returns their findings.
func corruptScratch(names []string, s Scratch) ([]results.Finding, error) {
	var out []results.Finding
	for _, name := range names {
		spec, ok := faultTable[name]
		if !ok || spec.at != afterShutdown {
			continue
		}
		where, err := spec.corrupt(s)
		if err != nil {
			return out, fmt.Errorf("fault %s: %w", name, err)
		}
		out = append(out, results.Finding{Source: "runner", Category: results.CatFaultInjected, Severity: results.SevInfo,
			Title: "injected fault " + name + ": " + where})
	}
	return out, nil
}

// flipInodeTable overwrites the first block of an ext4 scratch image's
// inode table (group 0: inodes 1-16 with 256-byte inodes, the root
// directory's inode 2 among them) with pseudo-random bytes.
func flipInodeTable(s Scratch) (string, error) {
	if s.FS != "ext4" {
		return "", fmt.Errorf("flip-bytes is implemented for ext4 scratch disks, not %q", s.FS)
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	loc, err := ext4InodeTable(f)
	if err != nil {
		return "", err
	}
	junk := make([]byte, loc.BlockSize)
	rng := rand.New(rand.NewPCG(uint64(loc.Offset), 7))
	for i := range junk {
		junk[i] = byte(rng.UintN(255) + 1) // never zero: an all-zero inode would look unused
	}
	if _, err := f.WriteAt(junk, loc.Offset); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d random bytes at offset %d (ext4 inode table of group 0, block %d)",
		filepath.Base(s.Path), len(junk), loc.Offset, loc.Block), nil
}

// inodeTable is where group 0's inode table starts in an ext4 image.
type inodeTable struct {
	BlockSize int64
	Block     int64 // first block of the table
	Offset    int64 // byte offset of Block
}

// ext4InodeTable reads the superblock and group 0's descriptor of an ext4
// image. The image is outside input: every field is bounds-checked.
func ext4InodeTable(r io.ReaderAt) (inodeTable, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return inodeTable{}, fmt.Errorf("read ext4 superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return inodeTable{}, errors.New("no ext4 superblock (bad magic)")
	}
	logBlock := binary.LittleEndian.Uint32(sb[0x18:])
	if logBlock > 6 { // 1 KiB .. 64 KiB blocks
		return inodeTable{}, fmt.Errorf("ext4 superblock: block size 1024<<%d out of range", logBlock)
	}
	bs := int64(1024) << logBlock
	firstData := int64(binary.LittleEndian.Uint32(sb[0x14:]))
	const incompat64bit = 0x80
	descSize := int64(32)
	if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
		descSize = int64(binary.LittleEndian.Uint16(sb[0xFE:]))
		if descSize < 64 || descSize > 1024 || descSize&(descSize-1) != 0 {
			return inodeTable{}, fmt.Errorf("ext4 superblock: group descriptor size %d out of range", descSize)
		}
	}
	gd := make([]byte, descSize)
	if _, err := r.ReadAt(gd, (firstData+1)*bs); err != nil {
		return inodeTable{}, fmt.Errorf("read ext4 group descriptor 0: %w", err)
	}
	block := int64(binary.LittleEndian.Uint32(gd[0x8:]))
	if descSize >= 64 {
		block |= int64(binary.LittleEndian.Uint32(gd[0x28:])) << 32
	}
	if block <= firstData+1 || block > (1<<47)/bs {
		return inodeTable{}, fmt.Errorf("ext4 group descriptor 0: inode table at block %d out of range", block)
	}
	return inodeTable{BlockSize: bs, Block: block, Offset: block * bs}, nil
}

// drawFaults decides the cell's probabilistic faults for one run (cell,
// repeat) of a run with fault seed seed, and returns the cell with only the
// faults that fire this run, and the decisions. The draw is a pure function
// of (seed, cell ID, repeat, fault), so retries of a run, a resumed run and a
// replay with the same seed decide the same.
func drawFaults(seed uint64, c matrix.Cell, repeat int) (matrix.Cell, []results.FaultDraw) {
	if len(c.Settings.FaultProbability) == 0 {
		return c, nil
	}
	var keep []string
	var draws []results.FaultDraw
	for _, name := range c.Settings.Faults {
		p, probabilistic := c.Settings.FaultProbability[name]
		if !probabilistic {
			keep = append(keep, name)
			continue
		}
		d := faultDraw(seed, c.ID, repeat, name)
		draws = append(draws, results.FaultDraw{Fault: name, Probability: p, Draw: d, Injected: d < p})
		if d < p {
			keep = append(keep, name)
		}
	}
	c.Settings.Faults = keep
	return c, draws
}

// faultDraw is uniform in [0, 1): FNV-1a over the inputs, then the
// splitmix64 finaliser so that neighbouring repeats are independent.
func faultDraw(seed uint64, cell string, repeat int, fault string) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s\x00%d\x00%s", seed, cell, repeat, fault)
	z := h.Sum64()
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
