package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/reports"
)

type mergeFlags struct {
	Output string
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

Exit codes: 0 merged, 1 conflicting runs, 2 usage error or unreadable/mismatched shards.`,
		Example: `  matrixctl merge -o results results-shard-1 results-shard-2`,
		Args:    cobra.MinimumNArgs(1),
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
			_, err = fmt.Fprintf(streams.Out, "merged %d shards into %s: %d runs, %d artifacts, %d duplicates, run_id %s\n",
				sum.Shards, flags.Output, sum.Runs, sum.Artifacts, len(sum.Duplicates), sum.RunID)
			return err
		},
	}
	cmd.Flags().StringVarP(&flags.Output, "output", "o", "", "merged results directory (must not exist or be empty)")
	return cmd
}
