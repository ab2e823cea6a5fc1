package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/spf13/cobra"
)

// cellSelection holds the flags that pick cells of the plan; `plan` and
// `run` share it.
type cellSelection struct {
	kernel, distro, docker, driver, cell []string
	init, cgroup                         []string
	shard                                string
}

// addFlags registers the selection flags on cmd.
func (s *cellSelection) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&s.kernel, "kernel", nil, `kernel release line ("3.16" selects 3.16.x) or constraint (">= 5.10, < 6.2"); repeat or comma-separate for OR`)
	f.StringArrayVar(&s.distro, "distro", nil, "distro name (debian12) or suite (bookworm); repeat or comma-separate for OR")
	f.StringArrayVar(&s.docker, "docker", nil, `docker release line ("20.10") or constraint ("< 24"); repeat or comma-separate for OR`)
	f.StringArrayVar(&s.driver, "driver", nil, "storage driver (overlay2, aufs, ...); repeat or comma-separate for OR")
	f.StringArrayVar(&s.cell, "cell", nil, "cell ID or shell pattern (k6.1-*); repeat or comma-separate for OR")
	f.StringArrayVar(&s.init, "init", nil, "cells whose PID 1 is this: systemd (the default) or agent; comma-separate for OR")
	f.StringArrayVar(&s.cgroup, "cgroup", nil, "cells with this cgroup setting: distro (the default), v1 or v2; comma-separate for OR")
	f.StringVar(&s.shard, "shard", "", "only shard i of n (1-based, e.g. 2/5): cells sorted by ID, dealt round-robin")
}

// load reads the spec, plans it and applies the selection (selectCells
// without the left-out cells).
func (s *cellSelection) load(file string) ([]matrix.Cell, error) {
	cells, _, err := s.selectCells(file)
	return cells, err
}

func newPlanCommand(g *globalFlags, streams Streams) *cobra.Command {
	var (
		sel    cellSelection
		format string
		shards int
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "list the cells of the matrix: runnable or unsupported, and why",
		Long: `plan expands the matrix spec (-f, default matrix.yaml) into cells and classifies each one
before anything boots: runnable, or unsupported with the compatibility rule and its source.
Runnable cells may carry kernel checks (e.g. "does this kernel ship aufs?") that the runner
decides once it has downloaded the kernel package. When a cell's kernel is already in the
cache (--cache; plan downloads nothing), plan shows the runner's kernel preflight for it:
the kernel checks and the kernel requirements (namespaces, cgroups, networking, systemd,
the storage driver) read from the kernel's config and module tree — ok, warnings about
optional features, or unsupported with the CONFIG_ symbols or modules missing.

Filters: values within one flag are alternatives (repeat the flag or separate with commas),
different flags must all match. A kernel or docker value is a release line ("3.16" selects
3.16, 3.16.0 and 3.16.x) or a constraint (">= 5.10, < 6.2", whose commas mean AND). A filter
that selects nothing is an error that lists the values the plan has.

Formats:
  table          one line per cell: ID, status, reason or pending kernel checks, preflight
  json           {"cells": [{"id", "status", "reason", "kernel", "distro", "docker", "driver",
                 "pending", "settings", "detail", "preflight"}, ...]}; "preflight" (cached
                 kernels only) is {"kernel", "status": ok|warnings|unsupported|error,
                 "reason", "warnings"}
  github-matrix  a value for a GitHub Actions strategy.matrix (use it with fromJSON):
                 without --shards, {"include": [{"cell", "kernel", "distro", "docker", "driver"}]}
                 with one entry per runnable cell (run it with: matrixctl run --cell ...);
                 with --shards N, {"include": [{"shard": "1/N", "cells": K, "runnable": R}, ...]}
                 with one entry per non-empty shard (run it with: matrixctl run --shard ...,
                 and the same filters).

Exit codes: 0 ok, 2 spec or usage error (the message names file:line:column and the key).`,
		Example: `  # every cell of matrix.yaml, with the reason for each unsupported one
  matrixctl plan

  # the aufs cells of the 3.16 kernels, as JSON
  matrixctl plan -f old-kernels.yaml --kernel 3.16 --driver aufs --format json

  # kernels from 5.10 up to (not including) 6.2, overlay2 or vfs
  matrixctl plan --kernel '>= 5.10, < 6.2' --driver overlay2,vfs

  # the second of three shards
  matrixctl plan --shard 2/3

  # fan out over 4 CI jobs (GitHub Actions):
  #   plan:  echo "matrix=$(matrixctl plan --format github-matrix --shards 4)" >> "$GITHUB_OUTPUT"
  #   run:   strategy: {matrix: "${{ fromJSON(needs.plan.outputs.matrix) }}"}
  #          steps: - run: matrixctl run --shard ${{ matrix.shard }}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if shards != 0 && format != "github-matrix" {
				return usageErrorf("--shards goes with --format github-matrix (use --shard i/n to pick one shard)")
			}
			if shards < 0 || shards > matrix.MaxCells {
				return usageErrorf("--shards %d: want 1..%d", shards, matrix.MaxCells)
			}
			cells, err := sel.load(g.File)
			if err != nil {
				return err
			}
			switch format {
			case "table":
				err = matrix.WriteTable(streams.Out, cells, preflights(g.Cache, cells))
			case "json":
				err = matrix.WriteJSON(streams.Out, cells, preflights(g.Cache, cells))
			case "github-matrix":
				err = matrix.WriteGitHubMatrix(streams.Out, cells, shards)
			default:
				return usageErrorf("--format %s: want table, json or github-matrix", strconv.Quote(format))
			}
			if err != nil {
				return fmt.Errorf("write plan: %w", err)
			}
			return nil
		},
	}
	sel.addFlags(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or github-matrix")
	cmd.Flags().IntVar(&shards, "shards", 0, "with --format github-matrix: split into N shards, one matrix entry per shard")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json", "github-matrix"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("driver", cobra.FixedCompletions(matrix.Drivers(), cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("init", cobra.FixedCompletions(matrix.Inits(), cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("cgroup", cobra.FixedCompletions(matrix.Cgroups(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// preflights runs the runner's kernel preflight for each runnable cell
// whose kernel is already in the cache (nothing is downloaded), by cell ID.
func preflights(cacheDir string, cells []matrix.Cell) map[string]matrix.Preflight {
	out := map[string]matrix.Preflight{}
	type read struct {
		k   *runner.Kernel
		err error
	}
	kernels := map[string]read{} // by module tree
	for _, c := range cells {
		if c.Status != matrix.StatusRunnable {
			continue
		}
		k, err := images.CachedKernel(cacheDir, c.Kernel)
		if err != nil {
			out[c.ID] = matrix.Preflight{Status: matrix.PreflightError, Reason: err.Error()}
			continue
		}
		if k == nil {
			continue
		}
		r, ok := kernels[k.ModulesDir]
		if !ok {
			r.k, r.err = runner.ReadKernel(runner.KernelFiles{Release: k.Release, Config: k.Config, ModulesDir: k.ModulesDir})
			kernels[k.ModulesDir] = r
		}
		if r.err != nil {
			out[c.ID] = matrix.Preflight{Kernel: k.Release, Status: matrix.PreflightError, Reason: r.err.Error()}
			continue
		}
		out[c.ID] = preflightOf(c, r.k)
	}
	return out
}

// preflightOf is the preflight of cell c on kernel k, for the plan.
func preflightOf(c matrix.Cell, k *runner.Kernel) matrix.Preflight {
	p := matrix.Preflight{Kernel: k.Release, Status: matrix.PreflightOK}
	warnings, err := runner.KernelPreflight(c, k)
	var u *runner.UnsupportedError
	switch {
	case errors.As(err, &u):
		p.Status, p.Reason = matrix.PreflightUnsupported, u.Reason
	case err != nil:
		p.Status, p.Reason = matrix.PreflightError, err.Error()
	case len(warnings) > 0:
		p.Status = matrix.PreflightWarnings
		for _, w := range warnings {
			p.Warnings = append(p.Warnings, w.Excerpt)
		}
	}
	return p
}
