package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/matrix"
)

// JournalName is the journal's file name in the results directory.
const JournalName = "journal.jsonl"

// Journal record types.
const (
	recHeader   = "header"   // first record: run id, provider, spec, start time
	recStarted  = "started"  // a run attempt began
	recMachine  = "machine"  // a run's machine process (for orphan killing)
	recFinished = "finished" // a run's final result (after retries)
	recDecision = "decision" // --budget: the allocation rule chose (cell, repeat), and why
	recStopped  = "stopped"  // --budget: no more runs, and why
)

// journalRecord is one line of journal.jsonl.
type journalRecord struct {
	Type    string          `json:"type"`
	Time    time.Time       `json:"time"`
	Header  *results.File   `json:"header,omitempty"`
	Plan    *journalPlan    `json:"plan,omitempty"`
	Cell    string          `json:"cell,omitempty"`
	Repeat  int             `json:"repeat,omitempty"`
	Attempt int             `json:"attempt,omitempty"`
	Machine *Process        `json:"machine,omitempty"`
	Run     *results.Run    `json:"run,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Stopped string          `json:"stopped,omitempty"`
	Extra   json.RawMessage `json:"extra,omitempty"`
}

// journalPlan is the plan and the overrides a run was started with, so
// that --resume continues the same plan whatever the spec file says now.
type journalPlan struct {
	Cells   []matrix.Cell `json:"cells"`
	Repeat  int           `json:"repeat,omitempty"`
	Soak    time.Duration `json:"soak,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Budget  *Budget       `json:"budget,omitempty"`
}

// journal is an append-only JSONL file; every record is fsynced before
// Append returns, so what a resumed controller reads happened.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

// openJournal opens the journal for appending. The controller holds a
// shared flock on it while it runs (best effort, never waited for): it is
// how PruneResults tells a run in progress (see InProgress).
func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	return &journal{f: f}, nil
}

func (j *journal) Append(r journalRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: fsync: %w", err)
	}
	return nil
}

func (j *journal) Close() error { return j.f.Close() }

// journalState is what a journal says about a results directory.
type journalState struct {
	Header *results.File
	Plan   *journalPlan
	// Finished holds the final run of every (cell, repeat) that finished.
	Finished map[runKey]results.Run
	// Decisions are the budget's decisions in order (--budget).
	Decisions []decision
	// Stopped is the budget's recorded stop (empty if none yet).
	Stopped, StopReason string
	// InFlight holds runs that started and never finished, with the last
	// machine each one started (zero if none).
	InFlight map[runKey]Process
}

type runKey struct {
	Cell   string
	Repeat int
}

// readJournal replays a journal. A torn last line (the controller died
// while writing it) is ignored; a damaged line elsewhere is an error that
// names the line.
func readJournal(r io.Reader) (*journalState, error) {
	st := &journalState{Finished: map[runKey]results.Run{}, InFlight: map[runKey]Process{}}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	complete := bytes.HasSuffix(data, []byte("\n"))
	total := bytes.Count(data, []byte("\n"))
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec journalRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			if !complete && line == total+1 {
				break // torn final record
			}
			return nil, fmt.Errorf("journal line %d: %w", line, err)
		}
		k := runKey{rec.Cell, rec.Repeat}
		switch rec.Type {
		case recHeader:
			if rec.Header == nil {
				return nil, fmt.Errorf("journal line %d: header record without header", line)
			}
			st.Header, st.Plan = rec.Header, rec.Plan
		case recStarted:
			if _, done := st.Finished[k]; !done {
				st.InFlight[k] = Process{}
			}
		case recMachine:
			if rec.Machine != nil {
				if _, ok := st.InFlight[k]; ok {
					st.InFlight[k] = *rec.Machine
				}
			}
		case recFinished:
			if rec.Run == nil {
				return nil, fmt.Errorf("journal line %d: finished record without run", line)
			}
			st.Finished[k] = *rec.Run
			delete(st.InFlight, k)
		case recDecision:
			st.Decisions = append(st.Decisions, decision{Cell: rec.Cell, Repeat: rec.Repeat, Reason: rec.Reason})
		case recStopped:
			st.Stopped, st.StopReason = rec.Stopped, rec.Reason
		default:
			return nil, fmt.Errorf("journal line %d: unknown record type %q", line, rec.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if st.Header == nil || st.Plan == nil {
		return nil, errors.New("journal has no header record with the plan")
	}
	return st, nil
}

// RecordedProvider returns the provider a results directory was run with,
// from its journal.
func RecordedProvider(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, JournalName))
	if err != nil {
		return "", fmt.Errorf("resume %s: %w", dir, err)
	}
	defer f.Close()
	st, err := readJournal(f)
	if err != nil {
		return "", fmt.Errorf("resume %s: %w", dir, err)
	}
	return st.Header.Provider, nil
}
