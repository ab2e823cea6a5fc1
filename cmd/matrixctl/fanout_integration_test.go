package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/selfbuild"
	"github.com/matrixctl/matrixctl/internal/testutil"
)

// fanoutSpec is the small real matrix of the fan-out test: two runnable
// cells (Debian's 6.1 kernel under Debian 12, overlay2 and vfs; the agent as
// PID 1, which boots faster than systemd) and one cell that is unsupported
// at plan time, so the plan, the shards and the merge all carry one.
func fanoutSpec() string {
	return strings.Replace(testutil.SmallSpec{Init: "agent", Soak: "1s"}.YAML(), "driver: [overlay2]",
		"driver: [overlay2, vfs]\ninclude:\n  - {kernel: \"6.1\", distro: debian12, docker: \"26.1.5\", driver: overlay2}", 1)
}

// TestIntegrationShardsMergeLikeOneRun does what ci/github/matrixctl.yml and
// ci/gitlab/matrixctl.gitlab-ci.yml do, on real VMs: the plan's two shards
// run as separate matrixctl processes, each with its own cache (a hard-link
// copy of the shared test cache, as a CI runner restores its own) and its
// own results directory, at the same time; merge combines them; the merged
// report must hold exactly the cells and verdicts of a single-process run
// of the same matrix.
//
// Cost: 4 VM boots of 1 vCPU / 1 GiB with a 1 s io soak: the single run
// (2 cells, two at a time), then both shards at once (1 cell each). Measured
// on the 2-core dev machine under TCG with a warm cache: 183 s (the single
// run 91 s, the two shards together 90 s).
func TestIntegrationShardsMergeLikeOneRun(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresQEMU(t)
	testutil.RequiresBinary(t, "mmdebstrap", "e2fsck")
	ctx := context.Background()
	tmp := t.TempDir()
	spec := filepath.Join(tmp, "fanout.yaml")
	if err := os.WriteFile(spec, []byte(fanoutSpec()), 0o644); err != nil {
		t.Fatal(err)
	}
	// One build of the guest agent and the probe for every process below.
	for _, p := range []selfbuild.Program{selfbuild.Agent, selfbuild.Probe} {
		bin, err := selfbuild.Path(ctx, p, filepath.Join(tmp, "bin"))
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(p.Env, bin)
	}
	shared := testutil.CacheDir()

	// The plan a CI plan job computes: two shards, the unsupported cell in one.
	code, out, errOut := run(t, "plan", "-f", spec, "--format", "github-matrix", "--shards", "2")
	if code != ExitOK {
		t.Fatalf("plan: exit %d: %s", code, errOut)
	}
	var plan struct {
		Include []struct {
			Shard    string `json:"shard"`
			Cells    int    `json:"cells"`
			Runnable int    `json:"runnable"`
		} `json:"include"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.Include) != 2 ||
		plan.Include[0].Cells+plan.Include[1].Cells != 3 || plan.Include[0].Runnable+plan.Include[1].Runnable != 2 {
		t.Fatalf("plan --shards 2: %v: %s; want 2 shards holding 3 cells, 2 runnable", err, out)
	}

	// The single-process run first: it also fills the shared cache (kernel,
	// rootfs) that the shards' caches are copied from.
	single := filepath.Join(tmp, "single")
	start := time.Now()
	code, out, errOut = run(t, "run", "-f", spec, "--parallel", "2", "--out", single, "--cache", shared,
		"--history", "none", "--progress", "lines")
	t.Logf("single-process run: exit %d in %s\n%s\n%s", code, time.Since(start).Round(time.Second), out, errOut)
	if code != ExitOK && code != ExitFailed {
		t.Fatalf("single-process run: exit %d", code)
	}

	// The shards: separate processes, caches and results directories, at once.
	start = time.Now()
	var wg sync.WaitGroup
	dirs := make([]string, len(plan.Include))
	for i, e := range plan.Include {
		dirs[i] = filepath.Join(tmp, "shard-"+strings.ReplaceAll(e.Shard, "/", "-of-"))
		cache := filepath.Join(tmp, "cache-"+strings.ReplaceAll(e.Shard, "/", "-of-"))
		copyCache(t, shared, cache)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runShard(t, e.Shard, "run", "-f", spec, "--shard", e.Shard, "--parallel", "1", "--out", dirs[i],
				"--cache", cache, "--history", "none", "--progress", "lines")
		}()
	}
	wg.Wait()
	t.Logf("both shards in %s", time.Since(start).Round(time.Second))
	if t.Failed() {
		t.FailNow()
	}

	merged := filepath.Join(tmp, "merged")
	code, out, errOut = run(t, append([]string{"merge", "-o", merged}, dirs...)...)
	t.Logf("merge: exit %d\n%s%s", code, out, errOut)
	if code != ExitOK || errOut != "" {
		t.Fatalf("merge: exit %d, stderr %q; want 0 and no duplicates", code, errOut)
	}

	checkShardPlans(t, dirs, merged)

	want, got := reportOutcomes(t, single), reportOutcomes(t, merged)
	t.Logf("single-process run: %v", want)
	t.Logf("merged shards:      %v", got)
	if len(want) != 3 {
		t.Errorf("single-process report has %d cells, want 3 (2 ranked, 1 unsupported)", len(want))
	}
	if !maps.Equal(want, got) {
		t.Errorf("merged report differs from the single-process one:\nmerged %v\nsingle %v", got, want)
	}
	testutil.NoProcessesLeft(t, tmp)
}

// runShard runs matrixctl with args as its own process (the test binary's
// TestHelperMain) and fails t unless it exits 0 or 1 (judged, some cell
// failed); the verdicts are compared later.
func runShard(t *testing.T, shard string, args ...string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMain$", "-test.count=1")
	cmd.Env = append(os.Environ(), mainHelperEnv+"="+strings.Join(args, "\x1f"))
	start := time.Now()
	b, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("shard %s: %v", shard, err)
		return
	}
	t.Logf("shard %s: exit %d in %s\n%s", shard, code, time.Since(start).Round(time.Second), b)
	if code != ExitOK && code != ExitFailed {
		t.Errorf("shard %s: exit %d", shard, code)
	}
}

// copyCache seeds dst as a copy of the artifact cache src made of hard links
// (cp -al): its own directory tree, as a CI runner's restored cache is, with
// no second download or copy of the kernel and rootfs images. The runner
// boots those read-only (snapshot=on), and the cache replaces files by
// rename, so neither copy changes the other's data.
func copyCache(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"cp", "-al", src, dst}}); err != nil {
		t.Fatalf("cp -al %s %s: %v: %s", src, dst, err, out)
	}
}

// reportOutcomes is the JSON report of dir reduced to what the fan-out must
// keep: each cell's class, worst verdict and verdict counts (ranked cells)
// or class and reason (cells not run).
func reportOutcomes(t *testing.T, dir string) map[string]string {
	t.Helper()
	code, out, errOut := run(t, "report", dir, "--format", "json", "-o", "-", "--history", "none")
	if code != ExitOK {
		t.Fatalf("report %s: exit %d: %s", dir, code, errOut)
	}
	var rep struct {
		Ranking []struct {
			Cell     string         `json:"cell"`
			Class    string         `json:"class"`
			Worst    string         `json:"worst_verdict"`
			Verdicts map[string]int `json:"verdicts"`
		} `json:"ranking"`
		NotRun []struct {
			Cell   string `json:"cell"`
			Class  string `json:"class"`
			Reason string `json:"reason"`
		} `json:"not_run"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report %s: %v", dir, err)
	}
	m := map[string]string{}
	for _, c := range rep.Ranking {
		var vs []string
		for _, v := range slices.Sorted(maps.Keys(c.Verdicts)) {
			vs = append(vs, v+"="+strconv.Itoa(c.Verdicts[v]))
		}
		m[c.Cell] = "ranked " + c.Class + " worst=" + c.Worst + " " + strings.Join(vs, ",")
	}
	for _, c := range rep.NotRun {
		m[c.Cell] = "not run " + c.Class + ": " + c.Reason
	}
	return m
}

// checkShardPlans: each shard's results.json plans all 3 cells, the other
// shard's as other-shard with its reason, and the shard's report lists
// them as not run; the merged plan has every cell planned and its report
// counts no run as not run.
func checkShardPlans(t *testing.T, dirs []string, merged string) {
	t.Helper()
	for _, dir := range dirs {
		f, b := readResultsJSON(t, dir)
		if f.Plan == nil {
			t.Errorf("%s: no plan in %s", dir, b)
			continue
		}
		other := 0
		for _, c := range f.Plan.Cells {
			if c.Status == results.PlanOtherShard {
				other++
				if !strings.HasPrefix(c.Reason, "in shard ") {
					t.Errorf("%s: %s: reason %q", dir, c.Cell, c.Reason)
				}
			}
		}
		if len(f.Plan.Cells) != 3 || f.Plan.Shard == "" || other == 0 {
			t.Errorf("%s: plan %s; want 3 cells, some in the other shard", dir, b)
			continue
		}
		rep := reportJSON(t, dir)
		if p := rep.Summary.Plan; p == nil || p.OtherShard != other || p.NotRun != 0 {
			t.Errorf("%s: report plan counts %+v, want %d other-shard cells and no run missing", dir, p, other)
		}
	}
	f, b := readResultsJSON(t, merged)
	if f.Plan == nil || len(f.Plan.Cells) != 3 || len(f.Plan.Shards) != 2 {
		t.Fatalf("merged plan: %s", b)
	}
	for _, c := range f.Plan.Cells {
		if c.Status == results.PlanOtherShard || c.Status == results.PlanFiltered {
			t.Errorf("merged plan: %s is %s", c.Cell, c.Status)
		}
	}
	if p := reportJSON(t, merged).Summary.Plan; p == nil || p.Planned != 2 || p.Ran != 2 || p.NotRun != 0 {
		t.Errorf("merged report plan counts %+v, want 2 planned runs that all ran", p)
	}
}
