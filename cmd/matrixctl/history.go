package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/reports/history"
)

type historyPruneFlags struct {
	History   string
	OlderThan string
}

func newHistoryCommand(g *globalFlags, streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history",
		Short: "maintain the history database that run appends to and report reads trends from",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newHistoryPruneCommand(g, streams))
	return cmd
}

func newHistoryPruneCommand(g *globalFlags, streams Streams) *cobra.Command {
	flags := &historyPruneFlags{}
	cmd := &cobra.Command{
		Use:   "prune --older-than AGE",
		Short: "delete the runs older than AGE from the history database and give the space back",
		Long: `prune deletes from the history database (default <cache>/history.db) every run that
started more than AGE ago, with its cell runs and findings, then VACUUMs the file so it
shrinks. Run it from the nightly job to keep the history bounded; reports then trend over
what is left. Pruning is permanent.

Exit codes: 0 pruned (or nothing to prune), 2 usage error or no such database,
3 the database could not be written.`,
		Example: `  matrixctl history prune --older-than 180d
  matrixctl history prune --older-than 90d --history /srv/matrixctl/history.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHistoryPrune(cmd.Context(), g, streams, flags, time.Now())
		},
	}
	cmd.Flags().StringVar(&flags.OlderThan, "older-than", "", "delete runs started longer ago than this, e.g. 180d, 36h (required)")
	cmd.Flags().StringVar(&flags.History, "history", "", "history database (default <cache>/history.db)")
	return cmd
}

func runHistoryPrune(ctx context.Context, g *globalFlags, streams Streams, flags *historyPruneFlags, now time.Time) error {
	if flags.OlderThan == "" {
		return usageErrorf("--older-than is required, e.g. --older-than 180d")
	}
	cutoff, err := parseSince(flags.OlderThan, now)
	if err != nil {
		return usageErrorf("--older-than %q: want a duration like 180d or 36h", flags.OlderThan)
	}
	path := flags.History
	if path == "" {
		path = history.DefaultPath(g.Cache)
	}
	// Never create a database just to prune it.
	if _, err := os.Stat(path); err != nil {
		return withExit(ExitUsage, fmt.Errorf("--history: %w", err))
	}
	store, err := history.Open(path)
	if err != nil {
		return withExit(ExitUsage, err)
	}
	defer store.Close()
	p, err := store.Prune(ctx, cutoff)
	if err != nil {
		return withExit(ExitInfra, err)
	}
	fmt.Fprintf(streams.Out, "pruned %d runs (%d cell runs, %d findings) started before %s from %s; %s → %s\n",
		p.Runs, p.CellRuns, p.Findings, cutoff.UTC().Format("2006-01-02 15:04 UTC"), path, mib(p.Before), mib(p.After))
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
