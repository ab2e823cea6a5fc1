package matrix

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// checkShards proves that shards 1..n of cells are disjoint, cover every
// cell, and are balanced (runnable and unsupported counts differ by at most one).
func checkShards(t *testing.T, cells []Cell, n int) {
	t.Helper()
	owner := map[string]int{}
	var runnable, unsupported []int
	for i := 1; i <= n; i++ {
		part, err := Shard(cells, i, n)
		if err != nil {
			t.Fatal(err)
		}
		r, u := 0, 0
		for _, c := range part {
			if prev, dup := owner[c.ID]; dup {
				t.Fatalf("n=%d: cell %s in shards %d and %d", n, c.ID, prev, i)
			}
			owner[c.ID] = i
			if c.Status == StatusRunnable {
				r++
			} else {
				u++
			}
		}
		runnable, unsupported = append(runnable, r), append(unsupported, u)
	}
	if len(owner) != len(cells) {
		t.Fatalf("n=%d: shards hold %d cells, plan has %d", n, len(owner), len(cells))
	}
	for _, counts := range [][]int{runnable, unsupported} {
		if slices.Max(counts)-slices.Min(counts) > 1 {
			t.Errorf("n=%d: unbalanced shards %v", n, counts)
		}
	}
}

func TestShardsPartitionThePlan(t *testing.T) {
	for _, file := range []string{"../matrix.yaml", "testdata/valid-old-kernels.yaml", "testdata/valid-include-exclude.yaml"} {
		s, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		cells, err := s.Plan()
		if err != nil {
			t.Fatal(err)
		}
		for n := 1; n <= 7; n++ {
			checkShards(t, cells, n)
		}
	}
}

// randomSpec writes a valid spec with random axes, excludes and includes.
func randomSpec(r *rand.Rand) string {
	pick := func(all []string) []string {
		out := slices.Clone(all)
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out[:1+r.IntN(len(out))]
	}
	kernels := pick([]string{"3.16.0", "4.9", "4.19", "5.10", "6.1", "6.12"})
	distros := pick([]string{"debian11", "debian12", "debian13"})
	dockers := pick([]string{"distro", "20.10.5", "20.10.24", "26.1.5"})
	drivers := pick(Drivers())
	var b strings.Builder
	b.WriteString(header + "axes:\n  kernel:\n")
	for _, k := range kernels {
		fmt.Fprintf(&b, "    - {version: %q, local: {vmlinuz: /k/%s}}\n", k, k)
	}
	fmt.Fprintf(&b, "  distro: [%s]\n  docker: [%s]\n  driver: [%s]\n", strings.Join(distros, ", "), strings.Join(dockers, ", "), strings.Join(drivers, ", "))
	if r.IntN(2) == 0 && len(drivers) > 1 {
		fmt.Fprintf(&b, "exclude:\n  - {driver: %s}\n", drivers[0])
	}
	fmt.Fprintf(&b, "include:\n  - {kernel: %q, distro: debian12, docker: distro, driver: vfs, repeats: 2}\n", kernels[0])
	return b.String()
}

func TestShardsPartitionRandomPlans(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		text := randomSpec(r)
		s, err := Parse(fmt.Sprintf("random-%d.yaml", i), []byte(text))
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		cells, err := s.Plan()
		if err != nil {
			t.Fatal(err)
		}
		for n := 1; n <= 7; n++ {
			checkShards(t, cells, n)
		}
	}
}

func TestShardIsStable(t *testing.T) {
	cells := oldKernelsPlan(t)
	reversed := slices.Clone(cells)
	slices.Reverse(reversed)
	for i := 1; i <= 3; i++ {
		a, _ := Shard(cells, i, 3)
		b, _ := Shard(reversed, i, 3)
		ia, ib := ids(a), ids(b)
		slices.Sort(ia)
		slices.Sort(ib)
		if !slices.Equal(ia, ib) {
			t.Errorf("shard %d/3 depends on input order", i)
		}
	}
}

func TestParseShard(t *testing.T) {
	for _, ok := range []string{"1/1", "2/5", " 7/7"} {
		if _, _, err := ParseShard(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0/3", "4/3", "1/0", "a/b", "1", "-1/2", "1/2/3"} {
		if _, _, err := ParseShard(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
