package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/matrixctl/matrixctl/internal/images"
)

// The accelerator decision of AccelAuto, made once per host and remembered.
//
// On the machines this project runs on, /dev/kvm opens but a KVM guest makes
// no progress: every VM that tries KVM first loses KVMHelloTimeout (20 s)
// before it falls back to TCG. So the first AccelAuto VM of a host tries KVM
// under an exclusive lock and writes what happened, with its evidence, to
// <CacheDir>/host/accel.json; every later VM (in this process or another one
// sharing the cache) waits for that lock and then uses the decision without
// trying again. The decision holds while the host's kernel and QEMU binary
// are the ones it was made with; AccelRecheck (`matrixctl run --accel
// recheck`) tries KVM again and replaces it.

// AccelRecheck is AccelAuto that ignores a remembered decision made before
// this process started: its first VM tries KVM again and records the outcome.
const AccelRecheck Accel = "recheck"

const (
	accelDir      = "host"
	accelFile     = "accel.json"
	accelLockFile = "accel.lock"
	// accelAttemptLog keeps the console of the KVM attempt the decision
	// rests on.
	accelAttemptLog = "kvm-attempt-console.log"
)

// processStart tells an AccelRecheck whether the remembered decision is
// already this process's own recheck.
var processStart = time.Now()

// AccelDecision is the remembered outcome of AccelAuto's KVM attempt.
type AccelDecision struct {
	// Accel is what AccelAuto uses on this host: kvm or tcg.
	Accel Accel `json:"accel"`
	// Decided is when the attempt ran; Evidence says what it saw, e.g.
	// "kvm guest made no agent progress within 20s".
	Decided  time.Time `json:"decided"`
	Evidence string    `json:"evidence"`
	// AttemptConsole is the file holding the attempt's serial console.
	AttemptConsole string `json:"attempt_console,omitempty"`
	// HostKernel and QEMU identify what the decision was made with; a
	// change of either makes it stale.
	HostKernel string `json:"host_kernel"`
	QEMU       string `json:"qemu"`
}

// String is the decision as one log line.
func (d AccelDecision) String() string {
	return fmt.Sprintf("%s, decided %s: %s", d.Accel, d.Decided.UTC().Format(time.RFC3339), d.Evidence)
}

// ReadAccelDecision returns the decision remembered in cacheDir, or nil
// when there is none (or it is unreadable: then the next VM decides anew).
func ReadAccelDecision(cacheDir string) *AccelDecision {
	b, err := os.ReadFile(filepath.Join(cacheDir, accelDir, accelFile))
	if err != nil {
		return nil
	}
	var d AccelDecision
	if json.Unmarshal(b, &d) != nil || (d.Accel != AccelKVM && d.Accel != AccelTCG) {
		return nil
	}
	return &d
}

// hostIdentity is what a decision is valid for: the host kernel release
// and the QEMU binary (resolved path, size, modification time).
func hostIdentity(qemuPath string) (kernel, qemu string) {
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	qemu = qemuPath
	if st, err := os.Stat(qemuPath); err == nil {
		qemu = fmt.Sprintf("%s size=%d mtime=%s", qemuPath, st.Size(), st.ModTime().UTC().Format(time.RFC3339))
	}
	return kernel, qemu
}

// accelDecider serialises the KVM attempt of one cache directory.
type accelDecider struct {
	dir        string // <CacheDir>/host
	hostKernel string
	qemu       string
	unlock     func()
}

// lockAccel takes the host's decision lock; it returns the decision to
// follow (nil: this caller must try KVM and call record, then release).
func lockAccel(ctx context.Context, cacheDir, qemuPath string, recheck bool) (*accelDecider, *AccelDecision, error) {
	d := &accelDecider{dir: filepath.Join(cacheDir, accelDir)}
	d.hostKernel, d.qemu = hostIdentity(qemuPath)
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, nil, err
	}
	unlock, err := images.LockFile(ctx, filepath.Join(d.dir, accelLockFile))
	if err != nil {
		return nil, nil, err
	}
	d.unlock = unlock
	dec := ReadAccelDecision(filepath.Dir(d.dir))
	switch {
	case dec == nil:
	case dec.HostKernel != d.hostKernel || dec.QEMU != d.qemu:
		dec = nil // made with another kernel or QEMU: decide again
	case recheck && dec.Decided.Before(processStart):
		dec = nil
	}
	return d, dec, nil
}

// record writes the decision; attemptConsole (may be "") is copied beside
// it as the evidence.
func (d *accelDecider) record(accel Accel, evidence, attemptConsole string) (AccelDecision, error) {
	dec := AccelDecision{Accel: accel, Decided: time.Now().UTC(), Evidence: evidence, HostKernel: d.hostKernel, QEMU: d.qemu}
	if attemptConsole != "" {
		if b, err := os.ReadFile(attemptConsole); err == nil {
			dst := filepath.Join(d.dir, accelAttemptLog)
			if os.WriteFile(dst, b, 0o644) == nil {
				dec.AttemptConsole = dst
			}
		}
	}
	b, err := json.MarshalIndent(dec, "", "  ")
	if err != nil {
		return dec, err
	}
	tmp := filepath.Join(d.dir, accelFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return dec, err
	}
	return dec, os.Rename(tmp, filepath.Join(d.dir, accelFile))
}

func (d *accelDecider) release() {
	if d != nil && d.unlock != nil {
		d.unlock()
		d.unlock = nil
	}
}

// VCPUCapacity is how many guest vCPUs this host runs at once without
// slowing its VMs down, for `--parallel auto`: one per host core under TCG
// (an emulated vCPU that runs keeps a host core busy), two per core under
// KVM (a vCPU waits on IO much of the time and costs nothing then). The
// accelerator is accel, or for auto the host's remembered decision; a host
// that has not decided yet counts as TCG. why says how it was decided.
func VCPUCapacity(cacheDir string, accel Accel, cores int) (vcpus int, why string) {
	switch {
	case accel == AccelKVM:
		why = "kvm (--accel kvm)"
	case accel == AccelTCG:
		why = "tcg (--accel tcg)"
	case kvmUsable() != nil:
		accel, why = AccelTCG, "tcg (/dev/kvm not usable)"
	default:
		if d := ReadAccelDecision(cacheDir); d != nil && accel != AccelRecheck {
			accel, why = d.Accel, fmt.Sprintf("%s (host decision of %s)", d.Accel, d.Decided.UTC().Format(time.RFC3339))
		} else {
			accel, why = AccelTCG, "tcg until this host's KVM attempt decides"
		}
	}
	if accel == AccelKVM {
		return 2 * cores, why + ": 2 vCPUs per core"
	}
	return cores, why + ": 1 vCPU per core"
}
