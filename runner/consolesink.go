package runner

import (
	"io"
	"path/filepath"
	"sync"

	"github.com/matrixctl/matrixctl/runner/results"
)

// consoleSink is where one machine's console bytes go: console.log in the
// run directory (unless the provider writes it itself) and the live
// scanner. Writes are serialised: providers write from their own goroutines.
type consoleSink struct {
	mu      sync.Mutex
	w       []io.Writer
	scanner ConsoleScanner
	file    *artifactFile
	closed  bool
}

// openConsole makes the console sink of a machine whose artifacts go to
// dir. A fatal or crash finding fires end.
func (r *run) openConsole(dir string, ownsLog bool, end *earlyEnd) (*consoleSink, error) {
	c := &consoleSink{}
	if !ownsLog {
		f, err := createArtifact(filepath.Join(dir, "console.log"))
		if err != nil {
			return nil, Infra("console log", err)
		}
		c.file = f
		c.w = append(c.w, f)
	}
	if r.opts.Console != nil {
		c.scanner = r.opts.Console(func(f results.Finding) {
			if f.Severity == "fatal" || classify(f) == classCrash {
				end.fire("console: " + f.Title)
			}
		})
		c.w = append(c.w, c.scanner)
	}
	return c, nil
}

// Write implements io.Writer; after close it drops the bytes.
func (c *consoleSink) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	for _, w := range c.w {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *consoleSink) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed
}

// close finishes console.log and returns the scanner's findings.
func (c *consoleSink) close() []results.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var out []results.Finding
	if c.scanner != nil {
		out = c.scanner.Close()
	}
	if c.file != nil {
		_ = c.file.Finish()
	}
	return out
}
