package matrix

import "testing"

// The example matrix's first look touches every kernel line, distro and
// driver of its runnable cells, with as few cells as there are drivers.
func TestFirstLookExample(t *testing.T) {
	spec, err := Load("../matrix.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := spec.Plan()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]bool{"kernel": {}, "distro": {}, "driver": {}}
	runnable := 0
	for _, c := range cells {
		if c.Status == StatusRunnable {
			runnable++
			want["kernel"][c.Kernel.Version], want["distro"][c.Distro.Name], want["driver"][c.Driver] = true, true, true
		}
	}
	got := FirstLook(cells)
	have := map[string]map[string]bool{"kernel": {}, "distro": {}, "driver": {}}
	picked := 0
	for _, c := range got {
		if c.Status != StatusRunnable {
			continue
		}
		picked++
		t.Logf("first look: %s", c.ID)
		if s := c.Settings; s.Repeats != 1 || s.Soak > FirstLookSoak || s.CPUs != FirstLookCPUs || s.MemoryMB != FirstLookMemoryMB ||
			len(s.Probes) != 1 || s.Probes[0] != FirstLookProbe {
			t.Errorf("%s: settings %+v, want the first-look ones", c.ID, s)
		}
		have["kernel"][c.Kernel.Version], have["distro"][c.Distro.Name], have["driver"][c.Driver] = true, true, true
	}
	for axis, vs := range want {
		for v := range vs {
			if !have[axis][v] {
				t.Errorf("first look misses %s %s", axis, v)
			}
		}
	}
	if picked != len(want["driver"]) || picked >= runnable {
		t.Errorf("first look runs %d of %d runnable cells; want one per driver (%d)", picked, runnable, len(want["driver"]))
	}
	if len(got)-picked != len(cells)-runnable {
		t.Errorf("first look dropped unsupported cells: %d of %d kept", len(got)-picked, len(cells)-runnable)
	}
}
