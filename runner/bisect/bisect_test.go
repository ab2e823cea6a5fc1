package bisect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/api/results"
)

func versions(n int) []string {
	var vs []string
	for i := range n {
		vs = append(vs, fmt.Sprintf("6.1.0-%d", 47+i))
	}
	return vs
}

// fake is a line of versions where from firstBad on each run crashes with
// probability p (decided by the same seeded hash the executor uses), and
// runs listed in infra fail as the harness would. It remembers every run it
// made, so a replay can be told apart from a new run.
type fake struct {
	vs       []string
	firstBad int
	p        float64
	infra    map[[2]int]bool
	other    map[int]results.Verdict
	made     map[[2]int]results.Verdict
	newRuns  int
}

func (f *fake) run(_ context.Context, i, n int) (results.Verdict, error) {
	k := [2]int{i, n}
	if v, ok := f.made[k]; ok {
		return v, nil
	}
	f.newRuns++
	v := results.Pass
	in := &Injection{Probability: f.p, Seed: 7}
	switch {
	case f.infra[k]:
		v = results.InfraError
	case f.other[i] != "":
		v = f.other[i]
	case in.Applies(f.vs[i], n, i >= f.firstBad):
		v = results.KernelCrash
	}
	if f.made == nil {
		f.made = map[[2]int]results.Verdict{}
	}
	f.made[k] = v
	return v, nil
}

func TestSearchDeterministic(t *testing.T) {
	for firstBad := 1; firstBad <= 10; firstBad++ {
		f := &fake{vs: versions(11), firstBad: firstBad, p: 1}
		res, err := Search(context.Background(), Config{Versions: f.vs}, f.run)
		if err != nil {
			t.Fatal(err)
		}
		if res.FirstBad != f.vs[firstBad] || res.LastGood != f.vs[firstBad-1] || len(res.Skipped) > 0 {
			t.Errorf("first bad %d: got %s..%s skipped %v", firstBad, res.LastGood, res.FirstBad, res.Skipped)
		}
		// two ends (3 calibration runs of the bad one, 1 of the good one),
		// then at most ceil(log2(9)) = 4 middle steps of one run each.
		if mid := len(res.Steps) - 2; mid > int(math.Ceil(math.Log2(9))) || res.Runs != 3+1+mid {
			t.Errorf("first bad %d: %d middle steps, %d runs", firstBad, mid, res.Runs)
		}
		if res.Bad != results.KernelCrash || res.Streak != 1 {
			t.Errorf("bad %s streak %d", res.Bad, res.Streak)
		}
	}
}

// TestSearchFlaky: a crash in 30 % of the runs of every bad version; the
// boundary is still found, for many seeds of the flake, at 95 % per good step.
func TestSearchFlaky(t *testing.T) {
	wrong := 0
	const trials = 200
	for trial := range trials {
		firstBad := 1 + trial%10
		f := &fake{vs: versions(11), firstBad: firstBad, p: 0.3}
		seedShift(f, trial)
		res, err := Search(context.Background(), Config{Versions: f.vs, MaxRuns: 20, Calibrate: 10}, f.run)
		if err != nil {
			if strings.Contains(err.Error(), "never showed") {
				continue
			}
			t.Fatal(err)
		}
		if res.FirstBad != f.vs[firstBad] {
			wrong++
		}
	}
	// Each good step may be wrong with 5 %; a search has up to 4 of them.
	if wrong > trials/5 {
		t.Errorf("%d of %d flaky bisections wrong", wrong, trials)
	}
	t.Logf("%d of %d flaky bisections wrong", wrong, trials)
}

// seedShift renames the versions per trial so the seeded coin differs.
func seedShift(f *fake, trial int) {
	for i := range f.vs {
		f.vs[i] = fmt.Sprintf("%s~t%d", f.vs[i], trial)
	}
}

func TestSearchInfraErrorIsRetriedNotCounted(t *testing.T) {
	f := &fake{vs: versions(11), firstBad: 6, p: 1, infra: map[[2]int]bool{{5, 1}: true, {8, 1}: true}}
	res, err := Search(context.Background(), Config{Versions: f.vs}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstBad != f.vs[6] || res.LastGood != f.vs[5] {
		t.Errorf("got %s..%s", res.LastGood, res.FirstBad)
	}
	for _, st := range res.Steps {
		if st.Index == 5 && (len(st.Verdicts) != 2 || st.Judgement != Good) {
			t.Errorf("version 5: %+v, want an infra-error then a pass", st)
		}
	}
}

func TestSearchSkipsAnotherFailure(t *testing.T) {
	f := &fake{vs: versions(11), firstBad: 6, p: 1, other: map[int]results.Verdict{5: results.DockerFailure}}
	res, err := Search(context.Background(), Config{Versions: f.vs}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstBad != f.vs[6] || res.LastGood != f.vs[4] || len(res.Skipped) != 1 || res.Skipped[0] != f.vs[5] {
		t.Errorf("got %s..%s skipped %v, want the range %s..%s with %s skipped", res.LastGood, res.FirstBad, res.Skipped, f.vs[4], f.vs[6], f.vs[5])
	}
}

// TestSearchReplay: a second search over the recorded verdicts makes the
// same decisions and asks for no new run; one cut short resumes where it stopped.
func TestSearchReplay(t *testing.T) {
	f := &fake{vs: versions(11), firstBad: 3, p: 0.3}
	first, err := Search(context.Background(), Config{Versions: f.vs, MaxRuns: 20}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	made := f.newRuns
	again, err := Search(context.Background(), Config{Versions: f.vs, MaxRuns: 20}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if f.newRuns != made || again.FirstBad != first.FirstBad || len(again.Steps) != len(first.Steps) {
		t.Errorf("replay made %d new runs, answer %s (was %s)", f.newRuns-made, again.FirstBad, first.FirstBad)
	}

	// Interrupted after 5 runs: the resumed search makes only the rest.
	g := &fake{vs: versions(11), firstBad: 3, p: 0.3}
	stop := errors.New("interrupted")
	calls := 0
	_, err = Search(context.Background(), Config{Versions: g.vs, MaxRuns: 20}, func(ctx context.Context, i, n int) (results.Verdict, error) {
		if calls++; calls > 5 {
			return "", stop
		}
		return g.run(ctx, i, n)
	})
	if !errors.Is(err, stop) {
		t.Fatalf("cut short: %v", err)
	}
	resumed, err := Search(context.Background(), Config{Versions: g.vs, MaxRuns: 20}, g.run)
	if err != nil {
		t.Fatal(err)
	}
	if g.newRuns != made || resumed.FirstBad != first.FirstBad {
		t.Errorf("interrupted + resumed made %d runs, uninterrupted %d; answer %s, want %s", g.newRuns, made, resumed.FirstBad, first.FirstBad)
	}
}

func TestSearchBadEndNeverFails(t *testing.T) {
	f := &fake{vs: versions(3), firstBad: 99, p: 1}
	_, err := Search(context.Background(), Config{Versions: f.vs}, f.run)
	if err == nil || !strings.Contains(err.Error(), "never showed") {
		t.Errorf("got %v", err)
	}
	g := &fake{vs: versions(3), firstBad: 0, p: 1}
	if _, err := Search(context.Background(), Config{Versions: g.vs}, g.run); err == nil || !strings.Contains(err.Error(), "is not good") {
		t.Errorf("good end that fails: %v", err)
	}
}

func TestStreak(t *testing.T) {
	for _, c := range []struct {
		p    float64
		want int
	}{{1, 1}, {0.5, 5}, {0.3, 9}, {0.1, 29}} {
		if got := Streak(c.p, 0.95); got != c.want {
			t.Errorf("Streak(%v) = %d, want %d", c.p, got, c.want)
		}
	}
}
