package vagrant

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBin writes an executable shell script named name into dir.
func fakeBin(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCheckToolsNamesWhatIsMissing(t *testing.T) {
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	p := &Provider{}
	var mt *MissingToolError
	err := p.CheckTools(context.Background())
	if !errors.As(err, &mt) || mt.Tool != "vagrant" || !strings.Contains(err.Error(), "install the vagrant package") {
		t.Fatalf("no vagrant: %v", err)
	}
	fakeBin(t, bin, "vagrant", `echo "vagrant-share (2.0.0, system)"`)
	err = p.CheckTools(context.Background())
	if !errors.As(err, &mt) || mt.Tool != "virsh" {
		t.Fatalf("no virsh: %v", err)
	}
	fakeBin(t, bin, "virsh", `echo "error: failed to connect to the hypervisor" >&2; exit 1`)
	err = p.CheckTools(context.Background())
	if !errors.As(err, &mt) || mt.Tool != "vagrant-libvirt" || !strings.Contains(err.Error(), "vagrant plugin install vagrant-libvirt") {
		t.Fatalf("no plugin: %v", err)
	}
	fakeBin(t, bin, "vagrant", `echo "vagrant-libvirt (0.11.2, system)"`)
	err = p.CheckTools(context.Background())
	if !errors.As(err, &mt) || mt.Tool != "libvirtd" || !strings.Contains(err.Error(), "libvirtd -d") {
		t.Fatalf("no libvirtd: %v", err)
	}
	fakeBin(t, bin, "virsh", `echo "Running hypervisor: QEMU 7.2.0"`)
	if err := p.CheckTools(context.Background()); err != nil {
		t.Fatalf("all there: %v", err)
	}
}

func TestDestroyLeftoversRejectsForeignStateFiles(t *testing.T) {
	root := t.TempDir()
	bad := filepath.Join(root, "runs", "c", "r1", "vagrant", stateFile)
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Provider{}
	removed, err := p.DestroyLeftovers(context.Background(), root)
	if err == nil || !strings.Contains(err.Error(), bad) || len(removed) != 0 {
		t.Fatalf("removed %v, err %v", removed, err)
	}
}

func TestLastLine(t *testing.T) {
	out := "x\n    default: matrixctl-provision: unsupported: scratch filesystem zfs\nmore\n"
	if got := lastLine(out, "matrixctl-provision: unsupported:"); got != "unsupported: scratch filesystem zfs" {
		t.Errorf("got %q", got)
	}
}
