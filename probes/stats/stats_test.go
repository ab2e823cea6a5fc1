package stats

import (
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var l Latencies
	if l.Percentile(50) != 0 {
		t.Fatal("empty set has a percentile")
	}
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := l.Percentile(tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	m := map[string]float64{}
	l.Into(m, "x")
	if m["x_count"] != 100 || m["x_p99_us"] != 99000 {
		t.Fatalf("Into: %v", m)
	}
}
