package qemu

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccelDecisionRemembered(t *testing.T) {
	cache := t.TempDir()
	qemuBin := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	if err := os.WriteFile(qemuBin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, dec, err := lockAccel(ctx, cache, qemuBin, false)
	if err != nil || dec != nil {
		t.Fatalf("first lock: decision %v, err %v; want none", dec, err)
	}
	console := filepath.Join(t.TempDir(), "console-kvm-attempt.log")
	os.WriteFile(console, []byte("SeaBIOS\n"), 0o644)
	if _, err := d.record(AccelTCG, "kvm guest made no agent progress within 20s", console); err != nil {
		t.Fatal(err)
	}
	d.release()

	d, dec, err = lockAccel(ctx, cache, qemuBin, false)
	if err != nil || dec == nil || dec.Accel != AccelTCG {
		t.Fatalf("second lock: decision %v, err %v; want the remembered tcg", dec, err)
	}
	d.release()
	if b, err := os.ReadFile(dec.AttemptConsole); err != nil || string(b) != "SeaBIOS\n" {
		t.Errorf("attempt console kept as %q: %q, %v", dec.AttemptConsole, b, err)
	}
	if !strings.Contains(dec.String(), "no agent progress") {
		t.Errorf("String() = %q lacks the evidence", dec.String())
	}

	// A recheck ignores a decision older than this process, not its own.
	old := *dec
	old.Decided = processStart.Add(-time.Hour)
	d, _, _ = lockAccel(ctx, cache, qemuBin, true)
	if _, err := d.record(old.Accel, old.Evidence, ""); err != nil {
		t.Fatal(err)
	}
	d.release()
	d, dec, _ = lockAccel(ctx, cache, qemuBin, true)
	d.release()
	if dec == nil {
		t.Error("recheck ignored the decision this process made")
	}
	rewriteDecided(t, cache, processStart.Add(-time.Hour))
	d, dec, _ = lockAccel(ctx, cache, qemuBin, true)
	d.release()
	if dec != nil {
		t.Errorf("recheck followed an older decision %v", dec)
	}
	d, dec, _ = lockAccel(ctx, cache, qemuBin, false)
	d.release()
	if dec == nil {
		t.Error("auto ignored an older decision")
	}

	// Another QEMU binary makes the decision stale.
	later := time.Now().Add(time.Minute)
	os.Chtimes(qemuBin, later, later)
	d, dec, _ = lockAccel(ctx, cache, qemuBin, false)
	d.release()
	if dec != nil {
		t.Errorf("a changed qemu binary kept the decision %v", dec)
	}
}

func rewriteDecided(t *testing.T, cache string, at time.Time) {
	t.Helper()
	dec := ReadAccelDecision(cache)
	if dec == nil {
		t.Fatal("no decision to rewrite")
	}
	dec.Decided = at
	b, _ := json.Marshal(dec)
	if err := os.WriteFile(filepath.Join(cache, accelDir, accelFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The KVM attempt is made once: a second decider waits for the first.
func TestAccelDecisionSerialised(t *testing.T) {
	cache := t.TempDir()
	ctx := context.Background()
	d1, _, err := lockAccel(ctx, cache, "/bin/true", false)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *AccelDecision)
	go func() {
		d2, dec, err := lockAccel(ctx, cache, "/bin/true", false)
		if err != nil {
			t.Error(err)
		}
		d2.release()
		got <- dec
	}()
	select {
	case dec := <-got:
		t.Fatalf("second decider did not wait (got %v)", dec)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := d1.record(AccelTCG, "kvm guest made no agent progress within 20s", ""); err != nil {
		t.Fatal(err)
	}
	d1.release()
	if dec := <-got; dec == nil || dec.Accel != AccelTCG {
		t.Errorf("second decider got %v, want the first one's tcg", dec)
	}
	ctx2, cancel := context.WithCancel(ctx)
	d3, _, _ := lockAccel(ctx, cache, "/bin/true", false)
	cancel()
	if _, _, err := lockAccel(ctx2, cache, "/bin/true", false); err == nil {
		t.Error("a canceled wait for the lock returned no error")
	}
	d3.release()
}
