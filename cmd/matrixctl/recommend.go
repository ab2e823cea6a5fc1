package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/reports/history"
)

type recommendFlags struct {
	Require  []string
	Format   string
	History  string
	Since    string
	Provider string
}

func newRecommendCommand(g *globalFlags, streams Streams) *cobra.Command {
	flags := &recommendFlags{}
	cmd := &cobra.Command{
		Use:   "recommend [DIR...]",
		Short: "answer which combination to use: the most stable cell that meets the constraints, and how sure that is",
		Long: `recommend reads the runs of the results directories given and of the history database
(many nights), keeps the cells that satisfy every --require, and answers with the most
stable one: the winner, its confidence (the Wilson lower bound of its pass rate, as the
report ranks, and P(best), the probability that it truly is the best of the candidates),
its evidence (runs, verdicts, the last failure) and the runner-up with why it lost.
Broken and failing cells never qualify; a pass whose kernel printed warnings counts
against a cell. "No combination qualifies" lists the nearest candidates and what
disqualified each; with too little evidence it names the best so far, not a winner.

A constraint is KEY OP VALUE: KEY is kernel, distro, docker, driver, init, cgroup,
scratch or cell; OP is ==, !=, >=, <=, >, < (versions compared as versions), in (a, b)
or not in (a, b).

Without DIR the history alone is used (default <cache>/history.db).

Exit codes: 0 a winner, 1 no winner (none qualifies, or too little evidence),
2 usage error, bad constraint or unreadable input, 3 cannot write.`,
		Example: `  matrixctl recommend --require 'docker >= 20.10' --require 'distro in (debian12, debian13)' \
      --require 'driver != devicemapper'
  matrixctl recommend results --history none --format json
  matrixctl recommend --since 14d --provider qemu --require 'kernel >= 6.1' --format markdown`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecommend(cmd.Context(), g, streams, flags, args, cmd.Flags().Changed("history"))
		},
	}
	cmd.Flags().StringArrayVar(&flags.Require, "require", nil, "a constraint KEY OP VALUE, e.g. 'docker >= 20.10' (repeatable)")
	cmd.Flags().StringVar(&flags.Format, "format", "text", "output format: text, json or markdown")
	cmd.Flags().StringVar(&flags.History, "history", "", "history database (default <cache>/history.db when it exists; none to disable)")
	cmd.Flags().StringVar(&flags.Since, "since", "", "consider history since this long ago, e.g. 7d, 36h (default all)")
	cmd.Flags().StringVar(&flags.Provider, "provider", "", "only history runs of this provider (default all)")
	return cmd
}

func runRecommend(ctx context.Context, g *globalFlags, streams Streams, flags *recommendFlags, dirs []string,
	historySet bool) error {
	switch flags.Format {
	case "text", "json", "markdown":
	default:
		return usageErrorf("--format %q: want text, json or markdown", flags.Format)
	}
	var cons []reports.Constraint
	for _, expr := range flags.Require {
		c, err := reports.ParseConstraint(expr)
		if err != nil {
			return withExit(ExitUsage, fmt.Errorf("--require: %w", err))
		}
		cons = append(cons, c)
	}
	since, err := parseSince(flags.Since, time.Now())
	if err != nil {
		return withExit(ExitUsage, err)
	}
	var files []*results.File
	for _, dir := range dirs {
		f, err := reports.Load(dir)
		if err != nil {
			return withExit(ExitUsage, err)
		}
		files = append(files, f)
	}
	stored, err := recommendHistory(ctx, g, flags, since, historySet)
	if err != nil {
		return err
	}
	if len(files) == 0 && len(stored) == 0 {
		return usageErrorf("nothing to decide on: give results directories or a history database with runs (--history)")
	}
	rep, err := reports.Build(ctx, reports.Combine(files, stored, flags.Provider), reports.Options{})
	if err != nil {
		return withExit(ExitUsage, err)
	}
	d := rep.Decide(cons)
	switch flags.Format {
	case "json":
		err = d.WriteJSON(streams.Out)
	case "markdown":
		err = d.WriteMarkdown(streams.Out)
	default:
		err = d.WriteText(streams.Out)
	}
	if err != nil {
		return withExit(ExitInfra, err)
	}
	if d.Outcome != reports.OutcomeWinner {
		return withExit(ExitFailed, fmt.Errorf("no winner: %s", d.Outcome))
	}
	return nil
}

// recommendHistory reads the history's cell runs: the default database
// only when it exists, an explicit --history always.
func recommendHistory(ctx context.Context, g *globalFlags, flags *recommendFlags, since time.Time,
	historySet bool) ([]history.StoredRun, error) {
	path := flags.History
	if path == "none" {
		return nil, nil
	}
	if path == "" {
		path = history.DefaultPath(g.Cache)
	}
	if _, err := os.Stat(path); err != nil {
		if !historySet && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, withExit(ExitUsage, fmt.Errorf("--history: %w", err))
	}
	store, err := history.Open(path)
	if err != nil {
		return nil, withExit(ExitUsage, err)
	}
	defer store.Close()
	runs, err := store.CellRuns(ctx, since)
	if err != nil {
		return nil, withExit(ExitUsage, err)
	}
	return runs, nil
}
