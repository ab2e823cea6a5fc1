package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/internal/testutil"
	"github.com/matrixctl/matrixctl/runner/agentproto"
	"github.com/matrixctl/matrixctl/runner/fscheck"
)

// TestIntegrationPowerCutReboot cuts a VM's power (SIGKILL of QEMU) while
// a guest writer fsyncs on the scratch filesystem, boots a second VM on the
// same scratch disk (ReuseScratch: no mkfs, the journal is replayed), waits
// for its dockerd, shuts it down cleanly and checks the image with e2fsck.
func TestIntegrationPowerCutReboot(t *testing.T) {
	f := integration(t, "6.1")
	testutil.RequiresBinary(t, "debugfs", "e2fsck")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := f.config(t, dir)
	cfg.CPUs, cfg.MemoryMB, cfg.KeepScratch = 1, 1024, true

	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitDockerReady(ctx); err != nil {
		vm.Close()
		t.Fatalf("first boot: %v\nconsole tail:\n%s", err, vm.ConsoleTail())
	}
	if err := vm.Command(ctx, agentproto.Command{Op: agentproto.OpWriteLoop, Arg: "/var/lib/docker/powercut"}); err != nil {
		vm.Close()
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let the writer fsync a few hundred times
	vm.Kill()
	if e := vm.Wait(); e.Reason != ExitKilled {
		t.Errorf("power cut: exit %s", e)
	}
	vm.Close()
	scratch := vm.ScratchImage()
	if _, err := os.Stat(scratch); err != nil {
		t.Fatalf("scratch disk gone after the power cut: %v", err)
	}

	cfg.ReuseScratch, cfg.KeepScratch = true, false
	vm2, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		vm2.Close()
		assertReleased(t, vm2, dir)
	}()
	if _, err := vm2.WaitDockerReady(ctx); err != nil {
		t.Fatalf("second boot on the same scratch: %v\nconsole tail:\n%s", err, vm2.ConsoleTail())
	}
	if e := vm2.Shutdown(ctx); e.Reason != ExitShutdown {
		t.Fatalf("second boot: shutdown %s", e)
	}
	res, err := fscheck.Check(ctx, scratch, "ext4")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %v: exit %d clean %v", res.Tool, res.Args, res.ExitCode, res.Clean)
	if !res.Clean {
		t.Errorf("ext4 not clean after power cut + reboot:\n%s", res.Output)
	}
	log, err := os.ReadFile(filepath.Join(dir, "agent.log"))
	if err != nil || !strings.Contains(string(log), "reusing the ext4 filesystem") {
		t.Errorf("second boot did not reuse the scratch filesystem (%v):\n%s", err, log)
	}
	// The writer's file, fsynced before the cut, is still there.
	out, err := exec.Command("debugfs", "-R", "stat /powercut", scratch).CombinedOutput()
	if m := regexp.MustCompile(`Type: regular .*\n(?:.*\n)*?.*\bSize: (\d+)`).FindSubmatch(out); err != nil || m == nil || string(m[1]) == "0" {
		t.Errorf("the fsynced file did not survive the power cut (%v):\n%s", err, out)
	}
}
