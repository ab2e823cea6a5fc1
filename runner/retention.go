package runner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/matrixctl/matrixctl/internal/images"
)

// ResultsDir is a results directory under a parent that PruneResults looked at.
type ResultsDir struct {
	Path     string    `json:"path"`
	Finished time.Time `json:"finished"` // results.json's last write
	Size     int64     `json:"size"`     // bytes on disk
	Reason   string    `json:"reason,omitempty"`
}

// ResultsPruned says what PruneResults removed and skipped.
type ResultsPruned struct {
	Removed []ResultsDir `json:"removed"`
	Skipped []ResultsDir `json:"skipped"` // old enough, but a run is in progress (Reason)
	Freed   int64        `json:"freed"`
}

// pruningPrefix marks a results directory PruneResults renamed away and is
// removing (a crashed prune leaves it; the next one finishes it).
const pruningPrefix = ".pruning-"

// InProgress says whether a controller (run or --resume) has dir's journal
// open: openJournal holds a shared flock on it for the controller's life.
func InProgress(dir string) bool {
	unlock, busy := lockJournal(dir)
	if !busy {
		unlock()
	}
	return busy
}

// lockJournal takes dir's journal exclusively without waiting; busy when a
// controller holds it. A directory without a journal is not busy.
func lockJournal(dir string) (unlock func(), busy bool) {
	f, err := os.Open(filepath.Join(dir, JournalName))
	if err != nil {
		return func() {}, false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, true
	}
	return func() { f.Close() }, false
}

// PruneResults removes the results directories directly under parent
// whose results.json was last written more than olderThan before now. Only
// directories with a results.json count as results directories; one whose
// run is in progress (InProgress) is skipped and reported. A directory is
// renamed to .pruning-<name>-… first, so a half-removed one is never read
// as results.
func PruneResults(parent string, olderThan time.Duration, now time.Time, dryRun bool) (*ResultsPruned, error) {
	des, err := os.ReadDir(parent)
	if err != nil {
		return nil, err
	}
	res := &ResultsPruned{}
	for _, de := range des {
		p := filepath.Join(parent, de.Name())
		if strings.HasPrefix(de.Name(), pruningPrefix) && de.IsDir() && !dryRun {
			if err := os.RemoveAll(p); err != nil {
				return nil, err
			}
			continue
		}
		if !de.IsDir() {
			continue
		}
		st, err := os.Stat(filepath.Join(p, ResultsName))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if now.Sub(st.ModTime()) <= olderThan {
			continue
		}
		d := ResultsDir{Path: p, Finished: st.ModTime(), Size: images.DiskUsage(p)}
		unlock, busy := lockJournal(p)
		if busy {
			d.Reason = "run in progress"
			res.Skipped = append(res.Skipped, d)
			continue
		}
		if !dryRun {
			to := filepath.Join(parent, pruningPrefix+de.Name()+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
			err := os.Rename(p, to)
			unlock()
			if err != nil {
				return nil, err
			}
			if err := os.RemoveAll(to); err != nil {
				return nil, err
			}
		} else {
			unlock()
		}
		res.Removed = append(res.Removed, d)
		res.Freed += d.Size
	}
	sort.Slice(res.Removed, func(i, j int) bool { return res.Removed[i].Finished.Before(res.Removed[j].Finished) })
	return res, nil
}
