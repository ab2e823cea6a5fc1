package results

import "slices"

// Severity says how bad a finding is (README.md, "Severity").
type Severity string

// Finding severities, from worst to least bad.
const (
	// SevFatal: the kernel crashed, hung or corrupted memory; the cell cannot go on.
	SevFatal Severity = "fatal"
	// SevError: damage the cell must report, but the kernel keeps running.
	SevError Severity = "error"
	// SevWarning: worth reading.
	SevWarning Severity = "warning"
	// SevInfo: a record of what the harness did (an injected fault).
	SevInfo Severity = "info"
)

// severities lists finding severities from worst to least bad.
var severities = []Severity{SevFatal, SevError, SevWarning, SevInfo}

// Rank orders severities, higher is worse: fatal 4, error 3, warning 2,
// info 1, anything else 0.
func (s Severity) Rank() int {
	if i := slices.Index(severities, s); i >= 0 {
		return len(severities) - i
	}
	return 0
}

// Category says what kind of event a finding is.
type Category string

// Console categories: what the console scanner (runner/console) emits.
// Their verdict and rank are in the category table below.
const (
	CatAufsError        Category = "aufs-error"
	CatBtrfsError       Category = "btrfs-error"
	CatBug              Category = "bug"
	CatConsoleSilent    Category = "console-silent"
	CatExt4Error        Category = "ext4-error"
	CatGPF              Category = "gpf"
	CatHardLockup       Category = "hard-lockup"
	CatHungTask         Category = "hung-task"
	CatIOError          Category = "io-error"
	CatJBD2Abort        Category = "jbd2-abort"
	CatKASAN            Category = "kasan"
	CatKernelPanic      Category = "kernel-panic"
	CatKFENCE           Category = "kfence"
	CatKmemleak         Category = "kmemleak"
	CatKMSAN            Category = "kmsan"
	CatListCorruption   Category = "list-corruption"
	CatLockdep          Category = "lockdep"
	CatMachineCheck     Category = "machine-check"
	CatNetdevUnregister Category = "netdev-unregister"
	CatOOMKill          Category = "oom-kill"
	CatOops             Category = "oops"
	CatOverlayfsError   Category = "overlayfs-error"
	CatPageAllocFailure Category = "page-alloc-failure"
	CatRCUStall         Category = "rcu-stall"
	CatSleepInAtomic    Category = "sleep-in-atomic"
	CatSoftLockup       Category = "soft-lockup"
	CatStackCorruption  Category = "stack-corruption"
	CatTrap             Category = "trap"
	CatUBSAN            Category = "ubsan"
	CatUnexpectedReboot Category = "unexpected-reboot"
	CatWarning          Category = "warning"
	CatWorkqueueLockup  Category = "workqueue-lockup"
	CatXFSError         Category = "xfs-error"
)

// Categories of the findings the runner adds for evidence other than the
// console (probes, the checker, the machine, the harness). They decide
// nothing themselves: the verdict comes from the evidence they record.
const (
	CatNoConsole         Category = "no-console"
	CatDataLoss          Category = "data-loss"
	CatCorruption        Category = "corruption"
	CatDockerDaemon      Category = "docker-daemon"
	CatFailedOp          Category = "failed-op"
	CatProbeFailed       Category = "probe-failed"
	CatFSCheckFailed     Category = "fs-check-failed"
	CatDockerUnreachable Category = "docker-unreachable"
	CatTimeout           Category = "timeout"
	CatShutdownFailed    Category = "shutdown-failed"
	CatUnsupported       Category = "unsupported"
	CatHarnessError      Category = "harness-error"
	CatFaultInjected     Category = "fault-injected"
	CatFaultNotInjected  Category = "fault-not-injected"
	CatCrashCheck        Category = "crash-check"
	// CatKernelConfig: the kernel lacks an optional feature the cell could
	// use (the preflight before boot; a missing essential makes the cell
	// unsupported instead).
	CatKernelConfig Category = "kernel-config"
)

// MachineCategory is the category of the finding that records why the
// machine stopped ("machine-crashed", "machine-hang", ...).
func MachineCategory(exitReason string) Category { return Category("machine-" + exitReason) }

// CategoryInfo is one row of the console category table.
type CategoryInfo struct {
	Category Category
	// Class is the verdict a finding of this category leads to; "" means
	// the finding is recorded and decides nothing alone.
	Class Verdict
}

// categories is the console category table, most impactful first: a row's
// position is its rank. Rows are grouped by Class in VerdictOrder, so a
// category never outranks one whose verdict is worse.
var categories = []CategoryInfo{
	// the kernel died
	{CatKernelPanic, KernelCrash},
	{CatUnexpectedReboot, KernelCrash},
	{CatMachineCheck, KernelCrash},
	{CatKASAN, KernelCrash},
	{CatKMSAN, KernelCrash},
	{CatKFENCE, KernelCrash},
	{CatStackCorruption, KernelCrash},
	{CatListCorruption, KernelCrash},
	{CatGPF, KernelCrash},
	{CatOops, KernelCrash},
	{CatTrap, KernelCrash},
	{CatBug, KernelCrash},
	// a filesystem reported damage
	{CatExt4Error, FSCorruption},
	{CatXFSError, FSCorruption},
	{CatBtrfsError, FSCorruption},
	{CatJBD2Abort, FSCorruption},
	{CatOverlayfsError, FSCorruption},
	{CatAufsError, FSCorruption},
	// a task or CPU made no progress
	{CatHardLockup, Hang},
	{CatSoftLockup, Hang},
	{CatRCUStall, Hang},
	{CatWorkqueueLockup, Hang},
	{CatHungTask, Hang},
	{CatConsoleSilent, Hang},
	// a block device returned an error: the probe that hit it failed
	{CatIOError, ProbeFailure},
	// recorded, decides nothing alone
	{CatLockdep, ""},
	{CatSleepInAtomic, ""},
	{CatUBSAN, ""},
	{CatOOMKill, ""},
	{CatNetdevUnregister, ""},
	{CatPageAllocFailure, ""},
	{CatWarning, ""},
	{CatKmemleak, ""},
}

// ConsoleCategories returns the console category table, most impactful first.
func ConsoleCategories() []CategoryInfo { return slices.Clone(categories) }

// Info looks c up in the console category table.
func (c Category) Info() (CategoryInfo, bool) {
	if i := c.Rank(); i < len(categories) {
		return categories[i], true
	}
	return CategoryInfo{}, false
}

// Rank is c's position in the console category table (0 is the most
// impactful); categories not in the table rank after every row.
func (c Category) Rank() int {
	if i := slices.IndexFunc(categories, func(ci CategoryInfo) bool { return ci.Category == c }); i >= 0 {
		return i
	}
	return len(categories)
}

// KernelWarning reports whether f is a kernel warning: something the kernel
// printed on the console with severity warning or error (a WARNING:, a
// lockdep or kmemleak report, an OOM kill, ...) whose category decides no
// verdict alone. Such a run still passes, but it is a pass with kernel
// warnings, which ranks below a clean pass (README.md, "Kernel warnings").
func KernelWarning(f Finding) bool {
	if f.Source != "console" || (f.Severity != SevWarning && f.Severity != SevError) {
		return false
	}
	info, ok := f.Category.Info()
	return ok && info.Class == ""
}

// KernelWarnings returns the kernel warnings among r's findings (see
// KernelWarning); nil when there are none.
func (r *Run) KernelWarnings() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if KernelWarning(f) {
			out = append(out, f)
		}
	}
	return out
}
