package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand(_ *globalFlags, streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the matrixctl version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			rev := "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						rev = s.Value
					}
				}
			}
			_, err := fmt.Fprintf(streams.Out, "matrixctl %s (commit %s, %s)\n", version, rev, runtime.Version())
			return err
		},
	}
}
