package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/matrixctl/matrixctl/probes"
	"github.com/matrixctl/matrixctl/probes/iowork"
	"github.com/matrixctl/matrixctl/runner/fscheck"
)

// flipDataFault corrupts, in a cleanly stopped machine's scratch image, a
// block of a file the IO probe had promised: silent corruption that no
// filesystem checker sees and only the probe's re-verification (after a
// boot on the same disk, crashcheck.go) can catch, naming file and offset.
const flipDataFault = "flip-data"

// flipBytes is how many bytes of the block are inverted.
const flipBytes = 16

// flipPromisedBlock inverts flipBytes bytes in the first block of the last
// file run runID's kept IO probe promised in its volume, on the ext4
// scratch image s, and says which file, block and image offset.
func flipPromisedBlock(ctx context.Context, s Scratch, runID string) (string, error) {
	if s.FS != "ext4" {
		return "", &UnsupportedError{Reason: fmt.Sprintf("%s is implemented for ext4 scratch disks, not %q", flipDataFault, s.FS)}
	}
	journal, err := fscheck.Debugfs(ctx, s.Path, "cat "+probes.IOJournal(runID))
	if err != nil {
		return "", fmt.Errorf("read the IO probe's journal from the image: %w", err)
	}
	promised, err := iowork.Promised(bytes.NewReader(journal))
	if err != nil {
		return "", fmt.Errorf("the IO probe's journal in the image: %w", err)
	}
	var target, inImage string
	for i := len(promised) - 1; i >= 0 && target == ""; i-- {
		if p := probes.IODockerPath(runID, promised[i].Path); p != "" {
			target, inImage = promised[i].Path, p
		}
	}
	if target == "" {
		return "", errors.New("the IO probe promised no file in its volume")
	}
	out, err := fscheck.Debugfs(ctx, s.Path, "bmap "+inImage+" 0")
	if err != nil {
		return "", err
	}
	block, err := fscheck.ParseBmap(out)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	loc, err := ext4InodeTable(f) // reads and checks the superblock's block size
	if err != nil {
		return "", err
	}
	off := block*loc.BlockSize + 64 // past the block's header: the data, not its identity
	buf := make([]byte, flipBytes)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "", fmt.Errorf("read block %d: %w", block, err)
	}
	for i := range buf {
		buf[i] = ^buf[i]
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return "", fmt.Errorf("write block %d: %w", block, err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes inverted in %s at offset 64 (its block 0 = ext4 block %d, scratch image offset %d)", flipBytes, target, block, off), nil
}
