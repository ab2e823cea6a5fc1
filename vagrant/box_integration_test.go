package vagrant

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/matrix"
)

// TestCacheDir is MATRIXCTL_CACHE when set, else a reusable dir under os.TempDir().
func testCacheDir() string {
	if d := os.Getenv("MATRIXCTL_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "matrixctl-test-cache")
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

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
	cache, err := images.New(testCacheDir(), images.WithProgress(logWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	box, err := BuildBox(ctx, cache, testBoxSpec, logWriter{t})
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
	again, err := BuildBox(ctx, cache, testBoxSpec, logWriter{t})
	if err != nil || again.File != box.File {
		t.Fatalf("rebuild: %v %v", again, err)
	}
}
