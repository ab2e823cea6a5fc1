package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/reports/history"
)

type mergeFlags struct {
	Output  string
	History string
}

func newMergeCommand(_ *globalFlags, streams Streams) *cobra.Command {
	flags := &mergeFlags{}
	cmd := &cobra.Command{
		Use:   "merge -o OUT DIR...",
		Short: "combine the results directories of shards into one, as if one machine ran every cell",
		Long: `merge reads DIR/results.json of every shard and writes OUT/results.json plus the
artifacts the runs reference (same relative paths). Runs are sorted by cell and repeat,
and the run ID is derived from the shards' run IDs, so merging the same shards gives
the same bytes.

A cell run found in several shards with the same verdict is a duplicate: it is kept
once (from the first DIR given) and listed on stderr. With different verdicts it is a
conflict: nothing is written, every conflict is listed, and the exit code is 1.

With --history DB the merged run is also appended to that history database, as matrixctl
run appends its own runs: shards run on separate CI runners each have their own cache, so
the one history that sees every night's whole matrix, and so the regressions that
report --fail-on regressions gates on, is the one the merge step keeps.

Exit codes: 0 merged, 1 conflicting runs, 2 usage error or unreadable/mismatched shards,
3 merged but the history database could not be written.`,
		Example: `  matrixctl merge -o results results-shard-1 results-shard-2

  # in a CI report job: keep the whole matrix's history, then gate on it
  matrixctl merge -o results --history history.db shards/*
  matrixctl report results --history history.db --fail-on regressions`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if flags.Output == "" {
				return usageErrorf("merge: -o OUT is required")
			}
			sum, err := reports.Merge(flags.Output, dirs)
			if errors.Is(err, reports.ErrConflict) {
				return withExit(ExitFailed, err)
			}
			if err != nil {
				return withExit(ExitUsage, err)
			}
			for _, d := range sum.Duplicates {
				kind := "identical"
				if !d.Identical {
					kind = "same verdict, different details"
				}
				fmt.Fprintf(streams.ErrOut, "duplicate run %s repeat %d (%s) in %v: kept the copy from %s\n",
					d.Cell, d.Repeat, kind, d.Dirs, d.Dirs[0])
			}
			if _, err := fmt.Fprintf(streams.Out, "merged %d shards into %s: %d runs, %d artifacts, %d duplicates, run_id %s\n",
				sum.Shards, flags.Output, sum.Runs, sum.Artifacts, len(sum.Duplicates), sum.RunID); err != nil {
				return err
			}
			if flags.History == "" {
				return nil
			}
			if err := appendMergedHistory(cmd.Context(), flags.History, flags.Output); err != nil {
				return withExit(ExitInfra, fmt.Errorf("merged into %s, but: %w", flags.Output, err))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&flags.Output, "output", "o", "", "merged results directory (must not exist or be empty)")
	cmd.Flags().StringVar(&flags.History, "history", "", "also append the merged run to this history database (created if missing; default: none)")
	return cmd
}

// appendMergedHistory appends the merged results in dir to the history
// database at path. Unlike run's history (a side record, its failure only
// printed), this is the merge step's job when asked for: a CI gate reads it.
func appendMergedHistory(ctx context.Context, path, dir string) error {
	f, err := reports.Load(dir)
	if err != nil {
		return err
	}
	store, err := history.Open(path)
	if err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	defer store.Close()
	if _, err := store.Append(ctx, f); err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	return nil
}
