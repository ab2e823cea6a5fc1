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

// calibrationEvery is how often the host is measured while a run goes on:
// a 250 ms measurement every 10 s costs the guest about 2.5 % of the host.
const calibrationEvery = 10 * time.Second

// calibrator measures the host before a run, every calibrationEvery while
// it goes on, and after it: load that comes and goes during a run shows in
// the mean, not only load at its ends.
type calibrator struct {
	before  float64
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []float64
}

func startCalibrator() *calibrator {
	c := &calibrator{before: calibrateCPU(), stop: make(chan struct{}), done: make(chan struct{})}
	c.samples = []float64{c.before}
	go func() {
		defer close(c.done)
		t := time.NewTicker(calibrationEvery)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				v := calibrateCPU()
				c.mu.Lock()
				c.samples = append(c.samples, v)
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// finish stops the sampling, measures once more and returns the mean.
func (c *calibrator) finish() *results.Calibration {
	close(c.stop)
	<-c.done
	after := calibrateCPU()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples = append(c.samples, after)
	sum := 0.0
	for _, v := range c.samples {
		sum += v
	}
	return &results.Calibration{CPUMiBps: sum / float64(len(c.samples)), Before: c.before, After: after,
		Samples: len(c.samples)}
}
