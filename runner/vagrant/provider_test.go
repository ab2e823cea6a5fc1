package vagrant

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixctl/matrixctl/runner"
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

func TestParseNetworkCIDR(t *testing.T) {
	for _, c := range []struct{ doc, want, err string }{
		{`<network><name>default</name><ip address='192.168.122.1' netmask='255.255.255.0'><dhcp/></ip></network>`, "192.168.122.0/24", ""},
		{`<network><ip family='ipv6' address='fd00::1' prefix='64'/><ip address='10.9.8.7' prefix='16'/></network>`, "10.9.0.0/16", ""},
		{`<network><ip family='ipv6' address='fd00::1' prefix='64'/></network>`, "", "no IPv4 address"},
		{`<network><ip address='10.0.0.1'/></network>`, "", "no usable netmask"},
		{`<network><ip address='10.0.0.1' netmask='255.0.255.0'/></network>`, "", "no usable netmask"},
		{`<network><ip address='host' prefix='8'/></network>`, "", "not IPv4"},
		{`<network>`, "", "network xml"},
	} {
		got, err := parseNetworkCIDR(c.doc)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: got %q, %v; want %q, %q", c.doc, got, err, c.want, c.err)
		}
	}
}

func FuzzParseNetworkCIDR(f *testing.F) {
	f.Add(`<network><ip address='192.168.122.1' netmask='255.255.255.0'/></network>`)
	f.Add(`<network><ip address='10.9.8.7' prefix='16'/></network>`)
	f.Fuzz(func(t *testing.T, doc string) {
		cidr, err := parseNetworkCIDR(doc)
		if err == nil {
			if _, _, perr := net.ParseCIDR(cidr); perr != nil {
				t.Fatalf("%q gave %q: %v", doc, cidr, perr)
			}
		}
	})
}

// TestRemoveStagedTouchesOnlyItsOwnFiles: the staged paths come from a
// state file on disk; only matrixctl's files in the BootDir are removed.
func TestRemoveStagedTouchesOnlyItsOwnFiles(t *testing.T) {
	boot, other := t.TempDir(), t.TempDir()
	mine := filepath.Join(boot, "matrixctl-abc-vmlinuz")
	foreign := []string{filepath.Join(boot, "vmlinuz-6.1"), filepath.Join(other, "matrixctl-abc-vmlinuz"), filepath.Join(boot, "sub", "..", "..", filepath.Base(other), "matrixctl-x")}
	for _, f := range append([]string{mine}, foreign[:2]...) {
		if err := os.WriteFile(f, []byte("k"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &Provider{BootDir: boot}
	p.removeStaged(state{Staged: append([]string{mine}, foreign...)})
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", mine, err)
	}
	for _, f := range foreign[:2] {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s removed: %v", f, err)
		}
	}
}

// TestWatchJudgesHowTheDomainStopped feeds the watcher the domain states a
// fake virsh answers, one per poll: only a stop the guest asked for is a
// crash; QEMU failing to start (the kernel unreadable, say) or dying, or
// the domain vanishing, is the host's failure.
func TestWatchJudgesHowTheDomainStopped(t *testing.T) {
	bin := t.TempDir()
	// virsh -c URI domstate NAME --reason: NAME is a file of states; each
	// call prints the next one ("gone" fails like a missing domain).
	fakeBin(t, bin, "virsh", `f=$4; n=$(cat "$f.n" 2>/dev/null || echo 1); echo $((n+1)) > "$f.n"
s=$(sed -n "${n}p" "$f"); [ -n "$s" ] || s=$(tail -n 1 "$f")
[ "$s" = gone ] && { echo "error: failed to get domain" >&2; exit 1; }
echo "$s"`)
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	for _, c := range []struct {
		name    string
		states  []string
		want    runner.ExitReason
		started bool
	}{
		{"qemu failed to start", []string{"shut off (unknown)", "paused (starting up)", "shut off (failed)"}, runner.ExitInfra, false},
		{"guest panicked", []string{"paused (starting up)", "running (booted)", "shut off (shutdown)"}, runner.ExitCrashed, true},
		{"qemu died", []string{"running (booted)", "shut off (crashed)"}, runner.ExitInfra, true},
		{"domain vanished", []string{"running (booted)", "gone"}, runner.ExitInfra, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(bin, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(f, []byte(strings.Join(c.states, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			m := &machine{p: &Provider{}, st: state{Domain: f}, exited: make(chan struct{})}
			started := make(chan struct{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m.watch(ctx, started)
			e := m.Exit()
			if e.Reason != c.want {
				t.Errorf("exit %+v, want %s", e, c.want)
			}
			select {
			case <-started:
				if !c.started {
					t.Errorf("a domain that never ran counted as started")
				}
			default:
				if c.started {
					t.Errorf("the running domain was not seen")
				}
			}
		})
	}
}
