package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/runner/agentproto"
	"github.com/matrixctl/matrixctl/runner/console"
)

// findingLog collects the console scanner's findings as they are reported.
type findingLog struct {
	mu   sync.Mutex
	list []console.Finding
}

func (l *findingLog) add(f console.Finding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, f)
}

func (l *findingLog) snapshot() []console.Finding {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]console.Finding(nil), l.list...)
}

// TestIntegrationIOErrors boots a 6.1 guest with overlay2 on an ext4 scratch
// disk, starts a guest writer that fsyncs on the scratch filesystem once
// dockerd is ready, arms read and write errors on the scratch drive through
// QMP, and expects the guest kernel's own reports on the serial console:
// failed requests on the scratch disk (vdc) and ext4 / jbd2 giving up.
// Nothing of the VM may be left after Close (the QMP socket included).
func TestIntegrationIOErrors(t *testing.T) {
	f := integration(t, "6.1")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := f.config(t, dir)
	cfg.CPUs, cfg.MemoryMB = 1, 1024
	var found findingLog
	scan := console.NewScanner(console.Options{OnFinding: found.add})
	cfg.Console = scan

	vm, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		vm.Close()
		assertReleased(t, vm, dir)
		if _, err := os.Stat(filepath.Join(vm.sockDir, qmpSocket)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("qmp socket still exists (%v)", err)
		}
	}()
	if _, err := vm.WaitDockerReady(ctx); err != nil {
		t.Fatalf("%v\nconsole tail:\n%s", err, vm.ConsoleTail())
	}
	if err := vm.Command(ctx, agentproto.Command{Op: agentproto.OpWriteLoop, Arg: "/var/lib/docker/eio-writer"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the writer runs and the scratch fs is healthy
	for _, f := range found.snapshot() {
		if f.Severity.Rank() >= results.SevError.Rank() {
			t.Errorf("before arming: %s", f)
		}
	}
	if _, ok := vm.ArmedIOErrors(); ok {
		t.Error("errors armed before InjectIOErrors")
	}

	armed, err := vm.InjectIOErrors(ctx, IORead, IOWrite)
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	t.Logf("armed: %s", armed)
	t.Logf("qemu's view of the scratch drive: %s", armed.Drive)
	if got, ok := vm.ArmedIOErrors(); !ok || got.Node != scratchInject {
		t.Errorf("ArmedIOErrors = %+v, %v", got, ok)
	}
	if _, err := vm.InjectIOErrors(ctx, IOWrite); err == nil || !strings.Contains(err.Error(), "already armed") {
		t.Errorf("second arming: got %v, want an already-armed error", err)
	}

	// Wait for the guest kernel to report the failed requests and the
	// filesystem to react.
	ioErr := regexp.MustCompile(`I/O error, dev vdc, sector \d+`)
	fsErr := regexp.MustCompile(`EXT4-fs error \(device vdc\)|Aborting journal on device vdc|EXT4-fs \(vdc\): Remounting filesystem read-only`)
	consolePath := filepath.Join(dir, "console.log")
	deadline := time.Now().Add(3 * time.Minute)
	var log []byte
	for time.Now().Before(deadline) {
		log, _ = os.ReadFile(consolePath)
		if ioErr.Match(log) && fsErr.Match(log) {
			break
		}
		time.Sleep(time.Second)
	}
	shown := 0
	for _, line := range strings.Split(string(log), "\n") {
		if (ioErr.MatchString(line) || fsErr.MatchString(line) || strings.Contains(line, "Buffer I/O error")) && shown < 12 {
			t.Logf("console: %s", strings.TrimSpace(line))
			shown++
		}
	}
	if !ioErr.Match(log) {
		t.Fatalf("no I/O error on the scratch disk (vdc) within 3m of arming; console tail:\n%s", vm.ConsoleTail())
	}
	if !fsErr.Match(log) {
		t.Errorf("ext4 on the scratch disk did not report the failing disk; console tail:\n%s", vm.ConsoleTail())
	}

	if err := vm.ClearIOErrors(ctx); err != nil {
		t.Errorf("clear: %v", err)
	}
	if _, ok := vm.ArmedIOErrors(); ok {
		t.Error("errors still armed after ClearIOErrors")
	}
	vm.Close()
	all := scan.Close()
	cats := map[results.Category]int{}
	for _, f := range all {
		t.Logf("finding: %s (count %d)", f, f.Count)
		cats[f.Category]++
	}
	t.Logf("categories: %v", cats)
	if cats[results.CatIOError] == 0 {
		t.Errorf("the console scanner found no %s", results.CatIOError)
	}
	if cats[results.CatExt4Error]+cats[results.CatJBD2Abort] == 0 {
		t.Errorf("the console scanner found no %s or %s", results.CatExt4Error, results.CatJBD2Abort)
	}
	for _, f := range all {
		if f.Severity == results.SevFatal {
			t.Errorf("fatal finding from injected I/O errors: %s", f)
		}
	}
	if _, err := vm.InjectIOErrors(ctx); err == nil {
		t.Error("inject on a closed VM: no error")
	} else {
		t.Logf("inject after close: %v", err)
	}
}
