package runner

import (
	"cmp"
	"fmt"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/internal/kconfig"
	"github.com/matrixctl/matrixctl/matrix"
)

// Preflighter is a Provider whose Prepare inspects the cell's kernel before
// boot (KernelPreflight). The runner asks it after a successful Prepare and
// records the findings — warnings about optional kernel features the
// kernel lacks — on the run. They decide no verdict.
type Preflighter interface {
	Preflight(req Request) []results.Finding
}

// KernelHost is the one place a cell's init, cgroup hierarchy and LSM
// become the kernel preflight's inputs. Under the distro's systemd the
// cgroup hierarchy is the cell's cgroup setting (distro: what the suite's
// systemd picks) and Docker confines containers with AppArmor, which
// Debian's kernels enable by default. The agent as PID 1 mounts cgroup v1
// by hand and mounts no securityfs, so Docker sees no AppArmor there.
func KernelHost(c matrix.Cell) kconfig.Host {
	if cmp.Or(c.Settings.Init, matrix.DefaultInit) == matrix.InitAgent {
		return kconfig.Host{Init: kconfig.InitAgent, Cgroup: kconfig.CgroupV1}
	}
	h := kconfig.Host{Init: kconfig.InitSystemd, Cgroup: cmp.Or(c.Settings.Cgroup, kconfig.CgroupDistro), LSM: kconfig.LSMAppArmor}
	if h.Cgroup == kconfig.CgroupDistro {
		h.Cgroup = kconfig.DistroCgroup(c.Distro.Suite)
	}
	return h
}

// KernelFiles is what the preflight reads of an imported kernel.
type KernelFiles struct {
	Release    string // uname -r, for the reason
	Config     string // the config file ("": none beside a local kernel; the table is then not checked)
	ModulesDir string // lib/modules/<release>
}

// Kernel is an imported kernel's config and module tree, read once for the
// preflights of every cell that boots it.
type Kernel struct {
	Release string
	Config  kconfig.Config // nil: the kernel has no config file
	Modules kconfig.Modules
}

// ReadKernel reads k's config and module tree; failing is an *InfraError.
func ReadKernel(k KernelFiles) (*Kernel, error) {
	out := &Kernel{Release: k.Release}
	if k.Config != "" {
		cfg, err := kconfig.Read(k.Config)
		if err != nil {
			return nil, Infra("read kernel config", err)
		}
		out.Config = cfg
	}
	mods, err := kconfig.ReadModules(k.ModulesDir)
	if err != nil {
		return nil, Infra("read module tree", err)
	}
	out.Modules = mods
	return out, nil
}

// KernelPreflight decides before boot whether kernel k can run cell c:
// first the cell's pending kernel checks (compatibility rules: their
// reasons stay as the rules word them), then the kernel requirements table
// (internal/kconfig) for the cell's host (KernelHost) and storage driver.
// A missing essential returns an *UnsupportedError naming the kernel, the
// CONFIG_ symbols or modules and why they are needed; missing optional
// features come back as warning findings. A kernel without a config file
// (a local kernel) gets its pending checks decided on its modules alone
// and one warning that the table was not checked.
func KernelPreflight(c matrix.Cell, k *Kernel) ([]results.Finding, error) {
	if ok, reason := matrix.EvalKernelChecks(c.Pending, k.Config, k.Modules.Has); !ok {
		return nil, &UnsupportedError{Reason: fmt.Sprintf("kernel %s: %s", k.Release, reason)}
	}
	if k.Config == nil {
		return []results.Finding{kernelConfigWarning(k.Release, "no config file beside the kernel: its kernel requirements were not checked")}, nil
	}
	r := kconfig.Check(k.Config, k.Modules.Has, KernelHost(c), c.Driver)
	if !r.OK() {
		return nil, &UnsupportedError{Reason: fmt.Sprintf("kernel %s: %s", k.Release, r.Reason())}
	}
	var warnings []results.Finding
	for _, w := range r.Warnings() {
		warnings = append(warnings, kernelConfigWarning(k.Release, w))
	}
	return warnings, nil
}

// kernelConfigWarning is the finding of an optional kernel feature found missing.
func kernelConfigWarning(release, what string) results.Finding {
	return results.Finding{Source: "runner", Category: results.CatKernelConfig, Severity: results.SevWarning,
		Title: summaryLine("kernel " + release + ": " + what), Excerpt: what}
}
