package main

import "github.com/spf13/cobra"

// subcommands lists every command constructor; each lives in its own file.
var subcommands = []func(*globalFlags, Streams) *cobra.Command{
	newVersionCommand,
	newPlanCommand,
	newReportCommand,
	newRunCommand,
	newMergeCommand,
	newRecommendCommand,
	newConsoleCommand,
	newBisectCommand,
	newHistoryCommand,
	newCacheCommand,
}
