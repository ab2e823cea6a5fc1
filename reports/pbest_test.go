package reports

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBetaCDF(t *testing.T) {
	for _, tt := range []struct{ x, a, b, want float64 }{
		{0.3, 5, 1, math.Pow(0.3, 5)},     // I_x(a, 1) = x^a
		{0.9, 21, 1, math.Pow(0.9, 21)},   //
		{0.3, 1, 4, 1 - math.Pow(0.7, 4)}, // I_x(1, b) = 1 - (1-x)^b
		{0.5, 7.5, 7.5, 0.5},              // symmetric
		{0.95, 19.5, 2.5, 0.83854054013},  // the density integrated by Simpson's rule, 200000 intervals
		{0, 3, 3, 0}, {1, 3, 3, 1},
	} {
		if got := betaCDF(tt.x, tt.a, tt.b); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("betaCDF(%v, %v, %v) = %.12f, want %.12f", tt.x, tt.a, tt.b, got, tt.want)
		}
	}
}

// TestProbBestMatchesDrawingEveryCell: the CDF shortcut estimates the same
// probabilities as drawing every cell's posterior.
func TestProbBestMatchesDrawingEveryCell(t *testing.T) {
	var cells []*CellScore
	add := func(n, passed, counted, warned int) {
		for range n {
			cells = append(cells, &CellScore{Passed: passed, Counted: counted, Warned: warned})
		}
	}
	add(1, 20, 20, 0)
	add(1, 19, 20, 0)
	add(30, 20, 20, 1)
	add(40, 18, 20, 0)
	add(5, 4, 4, 0)
	w, r := probBest(cells)
	rng := rand.New(rand.NewPCG(1, 2))
	var wins [2]int
	const n = 40000
	for range n {
		best, bestP := 0, -1.0
		for i, c := range cells {
			a := 1 + float64(c.Passed-c.Warned) + float64(c.Warned)/2
			b := 1 + float64(c.Counted-c.Passed) + float64(c.Warned)/2
			if p := SampleBeta(rng, a, b); p > bestP {
				best, bestP = i, p
			}
		}
		if best < 2 {
			wins[best]++
		}
	}
	bw, br := float64(wins[0])/n, float64(wins[1])/n
	// Two Monte Carlo estimates (20000 and 40000 samples): 5 standard errors.
	if math.Abs(w-bw) > 0.02 || math.Abs(r-br) > 0.02 {
		t.Errorf("probBest = %.4f, %.4f; drawing every cell gives %.4f, %.4f", w, r, bw, br)
	}
	if w == 0 || r == 0 {
		t.Errorf("probBest = %.4f, %.4f: want both above 0 for this evidence", w, r)
	}
}
