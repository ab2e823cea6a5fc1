// Package results defines results.json, the versioned record of a matrixctl
// run that the runner writes and reports/ reads, and the verdict taxonomy:
// verdicts in VerdictOrder, finding severities and the console category
// table (taxonomy.go; README.md explains the orders). It is a leaf: it
// imports no package of this project, so the console scanner, the runner
// and reports/ share one copy of each fact.
//
// Schema changes that remove or rename fields bump SchemaVersion.
package results

import "time"

// SchemaVersion is written to File.Schema.
const SchemaVersion = "matrixctl.results/v1"

// Verdict is the one outcome of a run of a cell.
type Verdict string

// The verdict taxonomy (see DESIGN.md). Order of severity is in VerdictOrder.
const (
	Pass          Verdict = "pass"
	KernelCrash   Verdict = "kernel-crash"
	Hang          Verdict = "hang"
	FSCorruption  Verdict = "fs-corruption"
	DataLoss      Verdict = "data-loss"
	ProbeFailure  Verdict = "probe-failure"
	DockerFailure Verdict = "docker-failure"
	Unsupported   Verdict = "unsupported"
	InfraError    Verdict = "infra-error"
)

// VerdictOrder orders verdicts from worst to best for the cell under test.
// infra-error and unsupported say nothing about the cell and come last.
var VerdictOrder = []Verdict{
	// the kernel or the storage stack is broken
	KernelCrash, DataLoss, FSCorruption, Hang,
	// the engine or the workload broke
	DockerFailure, ProbeFailure,
	// healthy
	Pass,
	// not a statement about the cell
	Unsupported, InfraError,
}

// File is results.json.
type File struct {
	Schema   string    `json:"schema"`
	RunID    string    `json:"run_id"`
	Spec     string    `json:"spec"`
	SpecHash string    `json:"spec_sha256,omitempty"`
	Host     string    `json:"host,omitempty"`
	Provider string    `json:"provider"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// FaultSeed decides, with each run's cell and repeat, whether the
	// cells' probabilistic faults fire (Run.FaultDraws); the same seed
	// replays the same decisions (matrixctl run --fault-seed).
	FaultSeed uint64 `json:"fault_seed,omitempty"`
	// Budget is set when the run spent a budget of VM-runs adaptively
	// (matrixctl run --budget) instead of uniform repeats.
	Budget *Budget `json:"budget,omitempty"`
	// Plan is what the run set out to do, written before the first run
	// starts (so an interrupted or killed run has it) and kept by --resume:
	// every cell of the spec and its part in this run. Results written
	// before the plan existed have none.
	Plan *Plan `json:"plan,omitempty"`
	Runs []Run `json:"runs"`
}

// Plan is every cell of the spec and its part in a run: selected (to run
// Repeats times), unsupported, filtered out, or in another shard.
type Plan struct {
	// Adaptive is set for a budgeted run (File.Budget): the budget decides
	// each selected cell's repeats as the run goes, so Repeats is 0.
	Adaptive bool `json:"adaptive,omitempty"`
	// Shard is "i/n" when the run was one shard of the spec's cells; Shards
	// lists every shard a merged plan combines.
	Shard  string     `json:"shard,omitempty"`
	Shards []string   `json:"shards,omitempty"`
	Cells  []PlanCell `json:"cells"`
}

// PlanStatus is a cell's part in a run.
type PlanStatus string

// Plan statuses.
const (
	// PlanSelected cells are run PlanCell.Repeats times.
	PlanSelected PlanStatus = "selected"
	// PlanUnsupported cells are recorded with one unsupported run, never booted.
	PlanUnsupported PlanStatus = "unsupported"
	// PlanFiltered cells were left out by a cell filter (Reason names it).
	PlanFiltered PlanStatus = "filtered"
	// PlanOtherShard cells belong to another shard (Reason names it).
	PlanOtherShard PlanStatus = "other-shard"
)

// PlanCell is one cell of the spec in a Plan.
type PlanCell struct {
	Cell   string     `json:"cell"`
	Kernel string     `json:"kernel"`
	Distro string     `json:"distro"`
	Docker string     `json:"docker"`
	Driver string     `json:"driver"`
	Status PlanStatus `json:"status"`
	// Reason says why a cell is not selected: the compatibility rule, the
	// filter flags that left it out, or its shard.
	Reason string `json:"reason,omitempty"`
	// Repeats is the number of runs planned for a selected cell (0 in an
	// adaptive plan: the budget decides).
	Repeats int `json:"repeats,omitempty"`
}

// Budget says how a budgeted run spent its runs and why it stopped.
type Budget struct {
	// Runs and Time are the budget (either may be 0: no limit of that kind).
	Runs int           `json:"runs,omitempty"`
	Time time.Duration `json:"time_ns,omitempty"`
	// Rule names the allocation rule and its parameters.
	Rule string `json:"rule"`
	// Spent is the number of VM-runs started (infra retries not counted).
	Spent int `json:"spent"`
	// Stopped is why no more runs were started: "confident", "budget-spent",
	// "time-spent", "nothing-left" or "interrupted"; StopReason in words.
	Stopped    string `json:"stopped"`
	StopReason string `json:"stop_reason,omitempty"`
	// Cells lists the runs each runnable cell got.
	Cells []BudgetCell `json:"cells"`
}

// BudgetCell is how many runs a cell got under a budget.
type BudgetCell struct {
	Cell string `json:"cell"`
	Runs int    `json:"runs"`
}

// Run is one run (one repeat, final attempt) of one cell.
type Run struct {
	Cell    string `json:"cell"`
	Kernel  string `json:"kernel"`
	Distro  string `json:"distro"`
	Docker  string `json:"docker"`
	Driver  string `json:"driver"`
	Repeat  int    `json:"repeat"`
	Attempt int    `json:"attempt"`
	// Retried lists the earlier attempts of this run that ended in an
	// infra-error and were retried, with their reasons (never counted).
	Retried []Retry `json:"retried,omitempty"`
	// KernelRelease is what the booted kernel reported (uname -r), when it booted.
	KernelRelease string `json:"kernel_release,omitempty"`
	// DockerServer is the version the daemon reported through the API.
	DockerServer string `json:"docker_server,omitempty"`
	// Host is what the booted guest looked like as a Docker host, when the
	// provider could tell (QEMU cells whose dockerd answered).
	Host *Host `json:"host,omitempty"`

	// FaultDraws records the decision for each probabilistic fault of the
	// cell in this run: injected when Draw < Probability.
	FaultDraws []FaultDraw `json:"fault_draws,omitempty"`
	// Calibration is the host's CPU capacity measured beside the run (run
	// with calibration on: the qemu and vagrant providers), so figures
	// measured under different host load can be compared.
	Calibration *Calibration `json:"calibration,omitempty"`
	// Decision is why a budgeted run (File.Budget) ran this repeat: the
	// allocation rule's reason ("first run", "leader: ...", "challenger: ...").
	Decision string `json:"decision,omitempty"`

	// ProbeMode is how the probes of the probe phase shared the daemon:
	// "concurrent" (all at once, the default) or "sequential"; the load a
	// verdict describes depends on it. Empty when the probes did not run.
	ProbeMode string `json:"probe_mode,omitempty"`

	Verdict Verdict `json:"verdict"`
	// Reason is a one-line human summary of the verdict.
	Reason   string    `json:"reason,omitempty"`
	Findings []Finding `json:"findings"`
	Probes   []Probe   `json:"probes,omitempty"`
	Checker  *Checker  `json:"checker,omitempty"`
	Phases   []Phase   `json:"phases"`
	// Artifacts maps an artifact name (console, agent, dockerd, probes,
	// checker, qemu-cmdline) to a path relative to the results directory.
	Artifacts map[string]string `json:"artifacts,omitempty"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
}

// Calibration is a host measurement beside a run: SHA-256 throughput over
// every host core, before the run, every 10 s during it and after it;
// CPUMiBps is the mean of the Samples measurements.
type Calibration struct {
	CPUMiBps float64 `json:"cpu_mib_s"`
	Before   float64 `json:"before_mib_s"`
	After    float64 `json:"after_mib_s"`
	Samples  int     `json:"samples,omitempty"`
}

// FaultDraw is one probabilistic fault's decision in one run.
type FaultDraw struct {
	Fault       string  `json:"fault"`
	Probability float64 `json:"probability"`
	// Draw is uniform in [0, 1), from File.FaultSeed, the cell and the repeat.
	Draw     float64 `json:"draw"`
	Injected bool    `json:"injected"`
}

// Host is evidence of what kind of Docker host a run's guest was: its init,
// cgroup setup and security options (from docker info), and every way the
// harness made it differ from a standard install.
type Host struct {
	// InitMode and CgroupMode are the cell's settings (init: systemd|agent,
	// cgroup: distro|v1|v2).
	InitMode   string `json:"init_mode,omitempty"`
	CgroupMode string `json:"cgroup_mode,omitempty"`
	// Init is what PID 1 is, as the guest reported it, e.g. "systemd 252 (252.39-1~deb12u1)"
	// or "matrixctl-agent" when the agent is PID 1.
	Init string `json:"init,omitempty"`
	// CgroupVersion ("1" or "2"), CgroupDriver ("systemd", "cgroupfs") and
	// SecurityOptions ("name=apparmor", "name=seccomp,profile=default", ...)
	// are docker info's.
	CgroupVersion     string   `json:"cgroup_version,omitempty"`
	CgroupDriver      string   `json:"cgroup_driver,omitempty"`
	SecurityOptions   []string `json:"security_options,omitempty"`
	RuncVersion       string   `json:"runc_version,omitempty"`
	ContainerdVersion string   `json:"containerd_version,omitempty"`
	// KernelCmdline is the guest's /proc/cmdline.
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
	// Accel is how QEMU ran the guest: "kvm", or "tcg" (an emulated CPU:
	// the same kernel and userland, slower, so timings are not comparable
	// with KVM runs).
	Accel string `json:"accel,omitempty"`
	// HarnessChanges lists how the harness made this guest differ from a
	// standard install of its distro plus docker.io.
	HarnessChanges []HarnessChange `json:"harness_changes,omitempty"`
	// PackagesAdded and PackagesRemoved are the user's package changes (the
	// cell's packages setting, not the harness's), as "name version":
	// the added packages as installed, and every package apt removed for
	// the removed ones, those that depended on them included (removing
	// iptables removes docker.io).
	PackagesAdded   []string `json:"packages_added,omitempty"`
	PackagesRemoved []string `json:"packages_removed,omitempty"`
}

// HarnessChange is one way the harness made a guest differ from a real host.
type HarnessChange struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// Retry is an attempt that ended in an infra-error and was retried.
type Retry struct {
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason"`
}

// Finding is one piece of evidence: from the console, a probe, the checker or the runner.
type Finding struct {
	Source    string   `json:"source"`   // console | probe | checker | runner
	Category  Category `json:"category"` // e.g. kernel-panic, hung-task, ext4-error
	Severity  Severity `json:"severity"` // fatal | error | warning | info
	Title     string   `json:"title"`
	StartLine int      `json:"start_line,omitempty"`
	EndLine   int      `json:"end_line,omitempty"`
	Excerpt   string   `json:"excerpt,omitempty"`
}

// Probe summarises one probe's records.
type Probe struct {
	Name    string             `json:"name"`
	OK      bool               `json:"ok"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Errors  []string           `json:"errors,omitempty"`
}

// Checker is the host-side filesystem checker's result on the scratch disk.
type Checker struct {
	Tool     string   `json:"tool"`
	Args     []string `json:"args"`
	ExitCode int      `json:"exit_code"`
	Clean    bool     `json:"clean"`
	Output   string   `json:"output,omitempty"`
}

// Phase is the timing of one phase of a run (prepare, boot, docker-ready, probes, shutdown, check).
type Phase struct {
	Name     string        `json:"name"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}
