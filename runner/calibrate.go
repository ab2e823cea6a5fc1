package runner

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
)

// calibrationTime is how long one host calibration hashes.
const calibrationTime = 250 * time.Millisecond

// calibrateCPU measures how much CPU the host gives right now: SHA-256
// throughput over every core for calibrationTime, in MiB/s. A busier host
// gives less, and so does a guest under TCG: the reports scale a run's
// performance figures by it (results.Calibration).
func calibrateCPU() float64 {
	buf := make([]byte, 1<<20)
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for time.Since(start) < calibrationTime {
				sha256.Sum256(buf)
				n++
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// calibration is the mean of a measurement before and after a run.
func calibration(before, after float64) *results.Calibration {
	return &results.Calibration{CPUMiBps: (before + after) / 2, Before: before, After: after}
}
