// Package bisect finds the first bad version along one axis of a cell (the
// kernel's patch releases of one line): the runs of each version are judged
// with the same taxonomy as any cell, flakes are handled by repeating a
// version until a pass streak is long enough to trust, infra errors never
// count, and a version that cannot be judged is skipped as git bisect skip
// does.
//
// The search (Search) is pure: it asks a RunFunc for the n-th run of a
// version and decides from the verdicts alone, so a resumed bisection that
// gets the recorded verdicts back makes the same decisions and redoes no run.
package bisect

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/matrixctl/matrixctl/api/results"
)

// RunFunc returns the verdict of run n (1-based) of version i of the
// search's versions. Asked again for a run it already made, it must return
// the recorded verdict without running again.
type RunFunc func(ctx context.Context, i, n int) (results.Verdict, error)

// Config is one bisection.
type Config struct {
	// Versions, oldest first; the first is the known-good one, the last the
	// known-bad one.
	Versions []string
	// Bad is the verdict bisected for; empty: the first failing verdict the
	// bad version shows.
	Bad results.Verdict
	// Confidence a good judgement must reach (0: 0.95): a version with a
	// pass streak of n is good when (1-p)^n <= 1-Confidence, where p is the
	// bad version's measured failure rate.
	Confidence float64
	// Calibrate is how many counted runs the bad version gets to measure
	// its failure rate (0: 3).
	Calibrate int
	// MaxRuns caps the runs of one version, infra errors included (0: 10).
	MaxRuns int
}

// Judgement, Step and Result are the schema's (api/results), so reports
// can render a bisection without importing the runner.
type (
	Judgement = results.Judgement
	Step      = results.BisectStep
	Result    = results.BisectResult
)

const (
	Good = results.JudgedGood
	Bad  = results.JudgedBad
	Skip = results.JudgedSkip
)

func (c *Config) defaults() {
	if c.Confidence <= 0 || c.Confidence >= 1 {
		c.Confidence = 0.95
	}
	if c.Calibrate <= 0 {
		c.Calibrate = 3
	}
	if c.MaxRuns <= 0 {
		c.MaxRuns = 10
	}
}

// Streak is the pass streak that makes a version good with confidence
// conf when the bad behaviour shows with probability failRate per run.
func Streak(failRate, conf float64) int {
	if failRate >= 1 {
		return 1
	}
	if failRate <= 0 {
		return math.MaxInt
	}
	return int(math.Ceil(math.Log(1-conf) / math.Log(1-failRate)))
}

// counted is a verdict that says something of the version (not the harness).
func counted(v results.Verdict) bool { return v != results.InfraError && v != results.Unsupported }

// Search runs the bisection.
func Search(ctx context.Context, cfg Config, run RunFunc) (*Result, error) {
	cfg.defaults()
	if len(cfg.Versions) < 2 {
		return nil, fmt.Errorf("bisect needs a good and a bad version, got %d version(s)", len(cfg.Versions))
	}
	s := &search{cfg: cfg, run: run, res: &Result{Bad: cfg.Bad}}
	good, bad := 0, len(cfg.Versions)-1

	if err := s.calibrate(ctx, bad); err != nil {
		return s.res, err
	}
	st, err := s.judge(ctx, good)
	if err != nil {
		return s.res, err
	}
	if st.Judgement != Good {
		return s.res, fmt.Errorf("the good version %s is not good: %s", cfg.Versions[good], st.Why)
	}
	skipped := map[int]bool{}
	for {
		i := s.next(good, bad, skipped)
		if i < 0 {
			break
		}
		st, err := s.judge(ctx, i)
		if err != nil {
			return s.res, err
		}
		switch st.Judgement {
		case Good:
			good = i
		case Bad:
			bad = i
		default:
			skipped[i] = true
		}
	}
	s.res.LastGood, s.res.FirstBad = cfg.Versions[good], cfg.Versions[bad]
	for i := good + 1; i < bad; i++ {
		s.res.Skipped = append(s.res.Skipped, cfg.Versions[i])
	}
	return s.res, nil
}

type search struct {
	cfg Config
	run RunFunc
	res *Result
	// runs made of each version so far
	made map[int]int
}

// next picks the untried version nearest the middle of (good, bad), or -1.
func (s *search) next(good, bad int, skipped map[int]bool) int {
	mid := (good + bad) / 2
	best := -1
	for i := good + 1; i < bad; i++ {
		if skipped[i] {
			continue
		}
		if best < 0 || abs(i-mid) < abs(best-mid) {
			best = i
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func (s *search) runOnce(ctx context.Context, i int) (results.Verdict, error) {
	if s.made == nil {
		s.made = map[int]int{}
	}
	s.made[i]++
	s.res.Runs++
	v, err := s.run(ctx, i, s.made[i])
	if err != nil {
		return "", fmt.Errorf("%s run %d: %w", s.cfg.Versions[i], s.made[i], err)
	}
	return v, nil
}

// calibrate runs the bad version until it shows the bad verdict and has
// Calibrate counted runs, and derives the streak good versions need.
func (s *search) calibrate(ctx context.Context, i int) error {
	st := Step{Version: s.cfg.Versions[i], Index: i}
	var fails, n int
	for s.made[i] < s.cfg.MaxRuns && (fails == 0 || n < s.cfg.Calibrate) {
		v, err := s.runOnce(ctx, i)
		if err != nil {
			return err
		}
		st.Verdicts = append(st.Verdicts, v)
		if !counted(v) {
			continue
		}
		n++
		if s.res.Bad == "" && v != results.Pass {
			s.res.Bad = v
		}
		if v == s.res.Bad {
			fails++
		}
	}
	if fails == 0 {
		st.Judgement, st.Why = Skip, fmt.Sprintf("never showed %s in %d runs (%d counted)", orFailure(s.res.Bad), len(st.Verdicts), n)
		s.res.Steps = append(s.res.Steps, st)
		return errors.New("the bad version " + st.Version + " " + st.Why)
	}
	s.res.FailRate = float64(fails) / float64(n)
	s.res.Streak = min(Streak(s.res.FailRate, s.cfg.Confidence), s.cfg.MaxRuns)
	s.res.Confidence = 1 - math.Pow(1-s.res.FailRate, float64(s.res.Streak))
	st.Judgement, st.Why = Bad, fmt.Sprintf("%s in %d of %d counted runs", s.res.Bad, fails, n)
	s.res.Steps = append(s.res.Steps, st)
	return nil
}

func orFailure(v results.Verdict) string {
	if v == "" {
		return "a failure"
	}
	return string(v)
}

// judge runs version i until one run shows the bad verdict (bad), the pass
// streak is reached (good), or it cannot be judged (skip).
func (s *search) judge(ctx context.Context, i int) (Step, error) {
	st := Step{Version: s.cfg.Versions[i], Index: i}
	passes := 0
	for {
		if s.made[i] >= s.cfg.MaxRuns {
			st.Judgement, st.Why = Skip, fmt.Sprintf("no judgement in %d runs (%d passes, streak %d needed)", s.made[i], passes, s.res.Streak)
			break
		}
		v, err := s.runOnce(ctx, i)
		if err != nil {
			return st, err
		}
		st.Verdicts = append(st.Verdicts, v)
		if v == s.res.Bad {
			st.Judgement, st.Why = Bad, fmt.Sprintf("%s in run %d", v, len(st.Verdicts))
			break
		}
		if !counted(v) {
			continue // the runner already retried it; try another run
		}
		if v != results.Pass {
			st.Judgement, st.Why = Skip, fmt.Sprintf("%s, not the %s bisected for", v, s.res.Bad)
			break
		}
		if passes++; passes >= s.res.Streak {
			st.Judgement, st.Why = Good, fmt.Sprintf("%d passes in a row", passes)
			break
		}
	}
	s.res.Steps = append(s.res.Steps, st)
	return st, nil
}
