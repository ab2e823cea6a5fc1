package vagrant

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

// TestBoxSpec is the box the integration tests boot: Debian 12 with its 6.1 kernel and docker.io.
var testBoxSpec = BoxSpec{
	Distro: matrix.DistroRef{Name: "debian12", Suite: "bookworm"},
	Kernel: matrix.KernelRef{Version: "6.1", Suite: "bookworm"},
	Docker: matrix.DockerRef{Version: "20.10.24"},
}

func TestIntegrationBuildBox(t *testing.T) {
	testutil.Integration(t)
	testutil.RequiresRoot(t)
	testutil.RequiresBinary(t, "mmdebstrap")
	testutil.RequiresBinary(t, "qemu-img")
	cache, err := images.New(testutil.CacheDir(), images.WithProgress(testutil.LogWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	box, err := BuildBox(ctx, cache, testBoxSpec, testutil.LogWriter(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{box.File, box.Kernel, box.Initrd} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
	out, err := proc.Output(ctx, proc.Cmd{Argv: []string{"tar", "-tf", box.File}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"metadata.json", "Vagrantfile", "box.img"} {
		if !strings.Contains(out, want) {
			t.Errorf("box lacks %s: %s", want, out)
		}
	}
	// The second call reuses the entry.
	again, err := BuildBox(ctx, cache, testBoxSpec, testutil.LogWriter(t))
	if err != nil || again.File != box.File {
		t.Fatalf("rebuild: %v %v", again, err)
	}
}
