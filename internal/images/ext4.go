package images

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// treeUsage returns the disk blocks (4 KiB) and inodes a directory tree needs.
func treeUsage(dir string) (blocks, inodes int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			blocks += (info.Size() + 4095) / 4096
		} else {
			blocks++
		}
		return nil
	})
	return blocks, inodes, err
}

// ext4Spec sizes an image: the content plus a fraction of headroom plus a fixed extra.
type ext4Spec struct {
	label     string
	headroom  float64 // fraction of the content
	extraMiB  int64
	extraInos int64
	journal   bool
}

// makeExt4 creates image as an ext4 filesystem holding dir's content with
// `mkfs.ext4 -d` (no mounts, no loop devices). The features are kept to what
// old kernels mount read-write (no metadata_csum, no orphan_file).
func makeExt4(ctx context.Context, dir, image string, spec ext4Spec) error {
	blocks, inodes, err := treeUsage(dir)
	if err != nil {
		return fmt.Errorf("size %s: %w", dir, err)
	}
	// ext4 metadata (inode tables at 256 B/inode, bitmaps, journal) on top of the data.
	inodes = inodes + inodes/4 + spec.extraInos + 1024
	metaBlocks := inodes*256/4096 + blocks/32 + 2048
	size := (blocks+metaBlocks)*4096 + int64(float64(blocks*4096)*spec.headroom) + spec.extraMiB<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	f, err := os.OpenFile(image, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	features := "^metadata_csum,^orphan_file,^metadata_csum_seed"
	if !spec.journal {
		features += ",^has_journal"
	}
	argv := []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0",
		"-N", strconv.FormatInt(inodes, 10), "-L", spec.label, "-O", features,
		"-E", "root_owner=0:0,nodiscard", "-d", dir, image}
	if _, err := run(ctx, proc.Cmd{Argv: argv}); err != nil {
		return err
	}
	return nil
}
