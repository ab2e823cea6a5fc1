package iowork

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// entry is one line of the state journal. A state entry (Withdraw false)
// promises that Path holds exactly the blocks Runs describe: it is written
// and fsynced only after the file and its directory were fsynced. A withdraw
// entry is written and fsynced before a destructive operation (unlink,
// rename, truncate) on Path: from then on nothing about Path is promised
// until a later state entry promises it again.
type entry struct {
	Path     string      `json:"p"`
	ID       uint64      `json:"id,omitempty"`
	Seed     uint64      `json:"seed,omitempty"`
	Runs     [][3]uint64 `json:"runs,omitempty"` // [first block, count, generation]
	Withdraw bool        `json:"w,omitempty"`
}

// journal appends entries with fsync.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := syncDir(path); err != nil {
		f.Close()
		return nil, err
	}
	return &journal{f: f}, nil
}

func (j *journal) append(e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal fsync: %w", err)
	}
	return nil
}

func (j *journal) promise(path string, f *file, seed uint64) error {
	return j.append(entry{Path: path, ID: f.id, Seed: seed, Runs: runs(f.gens)})
}

func (j *journal) withdraw(path string) error {
	return j.append(entry{Path: path, Withdraw: true})
}

func (j *journal) close() error { return j.f.Close() }

// runs run-length encodes per-block generations.
func runs(gens []uint64) [][3]uint64 {
	var out [][3]uint64
	for i, g := range gens {
		if n := len(out); n > 0 && out[n-1][2] == g && out[n-1][0]+out[n-1][1] == uint64(i) {
			out[n-1][1]++
			continue
		}
		out = append(out, [3]uint64{uint64(i), 1, g})
	}
	return out
}

// maxJournalBlocks bounds what a journal line may claim, so a damaged
// journal cannot make verify allocate without bound.
const maxJournalBlocks = 1 << 24

// readJournal folds the journal at path into the promised state per path.
// A torn last line (no newline, or not JSON) was never fsynced, so it
// promised nothing and is ignored; a damaged line in the middle is an error.
func readJournal(r io.Reader) (map[string]entry, []string, error) {
	state := map[string]entry{}
	var order []string
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// a line without newline was torn by the crash
			return state, order, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("journal line %d: %w", n, err)
		}
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, nil, fmt.Errorf("journal line %d: %w", n, err)
		}
		if e.Path == "" {
			return nil, nil, fmt.Errorf("journal line %d: no path", n)
		}
		var blocks uint64
		for _, r := range e.Runs {
			blocks += r[1]
			if r[1] > maxJournalBlocks || blocks > maxJournalBlocks || r[0] > maxJournalBlocks {
				return nil, nil, fmt.Errorf("journal line %d: implausible run %v", n, r)
			}
		}
		if _, ok := state[e.Path]; !ok {
			order = append(order, e.Path)
		}
		state[e.Path] = e
	}
}

// Promise is a file the state journal promises, with its block count.
type Promise struct {
	Path   string
	Blocks uint64
}

// Promised reads a state journal (outside input: a scratch image's copy,
// read from the host) and returns the files it still promises, non-empty
// and not withdrawn, in the order they were first promised.
func Promised(r io.Reader) ([]Promise, error) {
	state, order, err := readJournal(r)
	if err != nil {
		return nil, err
	}
	var out []Promise
	for _, p := range order {
		e := state[p]
		if e.Withdraw {
			continue
		}
		var n uint64
		for _, run := range e.Runs {
			n += run[1]
		}
		if n > 0 {
			out = append(out, Promise{Path: p, Blocks: n})
		}
	}
	return out, nil
}
