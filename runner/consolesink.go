package runner

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/matrixctl/matrixctl/api/results"
)

// consoleSink is where one machine's console bytes go: console.log in the
// run directory (unless the provider writes it itself) and the live
// scanner. Writes are serialised: providers write from their own goroutines.
type consoleSink struct {
	mu      sync.Mutex
	scanner ConsoleScanner
	file    *artifactFile
	closed  bool
	err     error // the first failed write or finish of console.log
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
	}
	if r.opts.Console != nil {
		c.scanner = r.opts.Console(func(f results.Finding) {
			if f.Severity == results.SevFatal || classify(f) == results.KernelCrash {
				end.fire("console: " + f.Title)
			}
		})
	}
	return c, nil
}

// Write implements io.Writer; after close it drops the bytes. A failed
// write of console.log (a full results disk) is kept for close and does
// not stop the analysis: the machine's console must never block.
func (c *consoleSink) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	if c.file != nil && c.err == nil {
		if _, err := c.file.Write(p); err != nil {
			c.err = fmt.Errorf("console.log: %w", err)
		}
	}
	if c.scanner != nil {
		_, _ = c.scanner.Write(p)
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
		if err := c.file.Finish(); err != nil && c.err == nil {
			c.err = err
		}
	}
	return out
}

// writeErr is the first failure to write console.log, valid after close.
func (c *consoleSink) writeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
