package selfbuild

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A binary this process built is rebuilt when its directory went away (a
// test's temporary cache, a pruned cache), not handed out as a dead path.
func TestPathRebuildsWhatWentAway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the guest agent with the Go toolchain")
	}
	t.Setenv(Agent.Env, "")
	ctx := context.Background()
	first := filepath.Join(t.TempDir(), "bin")
	p1, err := Path(ctx, Agent, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(first); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "bin")
	p2, err := Path(ctx, Agent, second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p2); err != nil || filepath.Dir(p2) != second {
		t.Errorf("after %s went away: got %s (%v), want a new build in %s", p1, p2, err, second)
	}
	if p3, err := Path(ctx, Agent, t.TempDir()); err != nil || p3 != p2 {
		t.Errorf("a build that still exists was not reused: %s, %v (want %s)", p3, err, p2)
	}
}
