package matrix

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
)

// String describes the check for people: "CONFIG_AUFS_FS=y|m or module aufs".
func (k KernelCheck) String() string {
	var parts []string
	for _, o := range k.AnyConfig {
		parts = append(parts, o+"=y|m")
	}
	if k.Module != "" {
		parts = append(parts, "module "+k.Module)
	}
	return strings.Join(parts, " or ")
}

// PlanJSON is the document `matrixctl plan --format json` prints.
type PlanJSON struct {
	Cells []PlanCellJSON `json:"cells"`
}

// PlanCellJSON is one cell in PlanJSON: the four axis values as plain
// strings, and the full references under detail.
type PlanCellJSON struct {
	ID              string        `json:"id"`
	Status          Status        `json:"status"`
	Reason          string        `json:"reason"`
	Kernel          string        `json:"kernel"`
	Distro          string        `json:"distro"`
	Docker          string        `json:"docker"`
	Driver          string        `json:"driver"`
	Pending         []KernelCheck `json:"pending,omitempty"`
	Settings        SettingsJSON  `json:"settings"`
	ScratchMkfsArgs []string      `json:"scratch_mkfs_args,omitempty"`
	Detail          CellDetail    `json:"detail"`
	// Preflight is set for a runnable cell whose kernel is already in the cache.
	Preflight *Preflight `json:"preflight,omitempty"`
}

// Preflight is what the kernel preflight (the cell's pending kernel checks
// and the kernel requirements table) says of a runnable cell whose kernel
// is already in the cache; the runner decides it again before boot.
type Preflight struct {
	Kernel   string   `json:"kernel"` // the cached kernel's release
	Status   string   `json:"status"` // PreflightOK, PreflightWarnings, PreflightUnsupported or PreflightError
	Reason   string   `json:"reason,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Preflight statuses.
const (
	PreflightOK          = "ok"
	PreflightWarnings    = "warnings"    // runs, with warning findings about optional kernel features
	PreflightUnsupported = "unsupported" // the runner will report the cell unsupported with Reason
	PreflightError       = "error"       // the cached kernel's files could not be read
)

// String is the preflight for the plan table: "ok (kernel 6.1.0-28-amd64)",
// "unsupported: kernel 6.1.0-28-amd64: …", "1 warning (kernel …): …".
func (p Preflight) String() string {
	switch p.Status {
	case PreflightOK:
		return "ok (kernel " + p.Kernel + ")"
	case PreflightWarnings:
		n := "warnings"
		if len(p.Warnings) == 1 {
			n = "warning"
		}
		return fmt.Sprintf("%d %s (kernel %s): %s", len(p.Warnings), n, p.Kernel, strings.Join(p.Warnings, "; "))
	default:
		return p.Status + ": " + p.Reason
	}
}

// CellDetail holds a cell's full axis references.
type CellDetail struct {
	Kernel KernelRef `json:"kernel"`
	Distro DistroRef `json:"distro"`
	Docker DockerRef `json:"docker"`
}

// SettingsJSON is Settings with durations as text ("30s").
type SettingsJSON struct {
	Probes     []string `json:"probes"`
	Soak       string   `json:"soak"`
	Repeats    int      `json:"repeats"`
	Timeout    string   `json:"timeout"`
	CPUs       int      `json:"cpus"`
	MemoryMB   int      `json:"memory_mb"`
	ScratchFS  string   `json:"scratch_fs,omitempty"`
	CrashCheck bool     `json:"crash_check,omitempty"`
	Faults     []string `json:"faults,omitempty"`
	Init       string   `json:"init,omitempty"`
	Cgroup     string   `json:"cgroup,omitempty"`
	// Packages are the cell's package changes (omitted when none).
	Packages *PackageChanges `json:"packages,omitempty"`
}

// NewPlanJSON converts cells for JSON output, with the preflights known
// (by cell ID; nil: none).
func NewPlanJSON(cells []Cell, pre map[string]Preflight) PlanJSON {
	out := PlanJSON{Cells: make([]PlanCellJSON, 0, len(cells))}
	for _, c := range cells {
		s := c.Settings
		out.Cells = append(out.Cells, PlanCellJSON{
			ID: c.ID, Status: c.Status, Reason: c.Reason,
			Kernel: c.Kernel.Version, Distro: c.Distro.Name, Docker: c.Docker.Version, Driver: c.Driver,
			Pending: c.Pending,
			Settings: SettingsJSON{
				Probes: s.Probes, Soak: s.Soak.String(), Repeats: s.Repeats, Timeout: s.Timeout.String(),
				CPUs: s.CPUs, MemoryMB: s.MemoryMB, ScratchFS: s.ScratchFS, CrashCheck: s.CrashCheck, Faults: s.Faults,
				Init: s.Init, Cgroup: s.Cgroup, Packages: packagesJSON(s.Packages),
			},
			ScratchMkfsArgs: c.ScratchMkfsArgs,
			Detail:          CellDetail{Kernel: c.Kernel, Distro: c.Distro, Docker: c.Docker},
		})
		if p, ok := pre[c.ID]; ok {
			out.Cells[len(out.Cells)-1].Preflight = &p
		}
	}
	return out
}

// packagesJSON is nil when p changes nothing.
func packagesJSON(p PackageChanges) *PackageChanges {
	if p.Empty() {
		return nil
	}
	return &p
}

// WriteJSON writes the plan as indented JSON, with the preflights known.
func WriteJSON(w io.Writer, cells []Cell, pre map[string]Preflight) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewPlanJSON(cells, pre))
}

// WriteTable writes the plan as an aligned table with a summary line, and
// the preflight of each cell that has one (by cell ID; nil: none).
// Text that came from the spec is stripped of control characters.
func WriteTable(w io.Writer, cells []Cell, pre map[string]Preflight) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tSTATUS\tREASON / PENDING KERNEL CHECKS")
	runnable, pending := 0, 0
	preflights := map[string]int{}
	for _, c := range cells {
		note := c.Reason
		if c.Status == StatusRunnable {
			runnable++
			var checks []string
			for _, k := range c.Pending {
				checks = append(checks, k.String())
			}
			if len(checks) > 0 {
				pending++
				note = "pending: " + strings.Join(checks, "; ")
			}
			if c.Settings.ScratchFS != "" {
				note = strings.TrimPrefix(note+"; scratch "+c.Settings.ScratchFS+" "+strings.Join(c.ScratchMkfsArgs, " "), "; ")
			}
			if p := c.Settings.Packages; !p.Empty() {
				note = strings.TrimPrefix(note+"; packages "+p.String(), "; ")
			}
			if p, ok := pre[c.ID]; ok {
				preflights[p.Status]++
				note = strings.TrimPrefix(note+"; preflight: "+p.String(), "; ")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(c.ID), c.Status, printable(strings.TrimSpace(note)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "\n%d cells: %d runnable (%d with kernel checks decided after download), %d unsupported\n",
		len(cells), runnable, pending, len(cells)-runnable); err != nil {
		return err
	}
	if len(preflights) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "kernel preflight of the runnable cells whose kernel is cached: %d ok, %d with warnings, %d unsupported, %d unreadable\n",
		preflights[PreflightOK], preflights[PreflightWarnings], preflights[PreflightUnsupported], preflights[PreflightError])
	return err
}

// printable replaces control characters (escape sequences, tabs, newlines) with spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
}

// GitHubMatrix is what a workflow's strategy.matrix consumes via fromJSON.
type GitHubMatrix struct {
	Include []map[string]any `json:"include"`
}

// NewGitHubMatrix builds a strategy.matrix value. With shards > 0 it has one
// entry per non-empty shard, {"shard": "i/n", "cells": K, "runnable": R},
// for jobs that run `matrixctl run --shard i/n`; otherwise one entry per
// runnable cell, {"cell": ID, "kernel", "distro", "docker", "driver"}, for
// jobs that run `matrixctl run --cell ID`.
func NewGitHubMatrix(cells []Cell, shards int) (GitHubMatrix, error) {
	m := GitHubMatrix{Include: []map[string]any{}}
	if shards <= 0 {
		for _, c := range cells {
			if c.Status == StatusRunnable {
				m.Include = append(m.Include, map[string]any{
					"cell": c.ID, "kernel": c.Kernel.Version, "distro": c.Distro.Name, "docker": c.Docker.Version, "driver": c.Driver,
				})
			}
		}
		return m, nil
	}
	for i := 1; i <= shards; i++ {
		part, err := Shard(cells, i, shards)
		if err != nil {
			return m, err
		}
		if len(part) == 0 {
			continue
		}
		runnable := 0
		for _, c := range part {
			if c.Status == StatusRunnable {
				runnable++
			}
		}
		m.Include = append(m.Include, map[string]any{"shard": fmt.Sprintf("%d/%d", i, shards), "cells": len(part), "runnable": runnable})
	}
	return m, nil
}

// WriteGitHubMatrix writes NewGitHubMatrix as one line of JSON (for $GITHUB_OUTPUT).
func WriteGitHubMatrix(w io.Writer, cells []Cell, shards int) error {
	m, err := NewGitHubMatrix(cells, shards)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(m)
}
