package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/runner"
)

func newCacheCommand(g *globalFlags, streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "list and prune the artifact cache (kernels, rootfs, initramfs, boxes) and old results",
		Long: `The artifact cache (--cache, env MATRIXCTL_CACHE) holds imported kernels, built
root filesystems, guest-agent initramfs files and Vagrant boxes. A run holds a
shared lock on every entry it boots from; prune never removes an entry in use
or being built, and says which it skipped.`,
	}
	cmd.AddCommand(newCacheLsCommand(g, streams), newCachePruneCommand(g, streams), newCachePruneResultsCommand(streams))
	return cmd
}

func newCacheLsCommand(g *globalFlags, streams Streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "list every cache entry: kind, key, what it is, size, last use, in use",
		Example: `  matrixctl cache ls
  matrixctl cache ls --json | jq '.[] | select(.in_use)'`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			es, err := images.ListEntries(g.Cache)
			if err != nil {
				return withExit(ExitInfra, fmt.Errorf("cache %s: %w", g.Cache, err))
			}
			if asJSON {
				if es == nil {
					es = []images.Entry{}
				}
				return writeJSON(streams.Out, es)
			}
			printEntries(streams.Out, es, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the entries as a JSON array")
	return cmd
}

func printEntries(w io.Writer, es []images.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tKEY\tDESCRIPTION\tSIZE\tLAST USED\tIN USE")
	var total int64
	for _, e := range es {
		inUse := "-"
		if e.InUse {
			inUse = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Kind, escapeText(e.Key), escapeText(e.Description),
			formatSize(e.Size), formatAge(now.Sub(e.LastUsed)), inUse)
		total += e.Size
	}
	tw.Flush()
	fmt.Fprintf(w, "%d entries, %s\n", len(es), formatSize(total))
}

type cachePruneFlags struct {
	olderThan, maxSize string
	dryRun, asJSON     bool
}

func newCachePruneCommand(g *globalFlags, streams Streams) *cobra.Command {
	f := &cachePruneFlags{}
	cmd := &cobra.Command{
		Use:   "prune [--older-than 14d] [--max-size 50G] [--dry-run]",
		Short: "remove cache entries not used lately, then the least recently used beyond a size",
		Long: `prune removes the entries not used for longer than --older-than, then the least
recently used ones until the cache holds at most --max-size. Entries in use by
a run (or being built) are skipped and listed. Removal is crash-safe: an entry
is renamed into <cache>/.trash first, then deleted. A pruned Vagrant box entry
stays registered with Vagrant: prune prints the 'vagrant box remove' to run.
At least one of --older-than and --max-size is needed.`,
		Example: `  matrixctl cache prune --older-than 14d
  matrixctl cache prune --max-size 50G --dry-run
  matrixctl cache prune --max-size 0     # everything not in use`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runCachePrune(g, streams, f)
		},
	}
	cmd.Flags().StringVar(&f.olderThan, "older-than", "", "remove entries not used for this long (e.g. 14d, 36h)")
	cmd.Flags().StringVar(&f.maxSize, "max-size", "", "then remove the least recently used until the cache is at most this big (e.g. 50G, 500MiB, 0)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "only say what would be removed")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return cmd
}

func runCachePrune(g *globalFlags, streams Streams, f *cachePruneFlags) error {
	o := images.PruneOptions{MaxSize: -1, DryRun: f.dryRun}
	if f.olderThan == "" && f.maxSize == "" {
		return usageErrorf("cache prune: give --older-than, --max-size or both")
	}
	var err error
	if f.olderThan != "" {
		if o.OlderThan, err = parseAge(f.olderThan); err != nil {
			return usageErrorf("--older-than %q: %v", f.olderThan, err)
		}
	}
	if f.maxSize != "" {
		if o.MaxSize, err = parseSize(f.maxSize); err != nil {
			return usageErrorf("--max-size %q: %v", f.maxSize, err)
		}
	}
	res, err := images.Prune(g.Cache, o)
	if err != nil {
		return withExit(ExitInfra, fmt.Errorf("cache %s: %w", g.Cache, err))
	}
	if f.asJSON {
		return writeJSON(streams.Out, res)
	}
	verb := "removed"
	if f.dryRun {
		verb = "would remove"
	}
	for _, e := range res.Removed {
		fmt.Fprintf(streams.Out, "%s %s %s %s (%s, last used %s ago)\n", verb, e.Kind, escapeText(e.Key),
			escapeText(e.Description), formatSize(e.Size), formatAge(time.Since(e.LastUsed)))
		if e.Box != "" {
			fmt.Fprintf(streams.Out, "  the box stays registered with Vagrant: vagrant box remove --force --all %s\n", escapeText(e.Box))
		}
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(streams.Out, "skipped %s %s %s (%s): %s\n", s.Entry.Kind, escapeText(s.Entry.Key),
			escapeText(s.Entry.Description), formatSize(s.Entry.Size), s.Reason)
	}
	fmt.Fprintf(streams.Out, "%s %d entries, %s (%d bytes); skipped %d; %s left in %s\n", verb, len(res.Removed),
		formatSize(res.Freed), res.Freed, len(res.Skipped), formatSize(res.Kept), g.Cache)
	return nil
}

func newCachePruneResultsCommand(streams Streams) *cobra.Command {
	var olderThan string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "prune-results PARENT... --older-than 30d [--dry-run]",
		Short: "remove old results directories under PARENT (never a run in progress)",
		Long: `prune-results removes the results directories directly under each PARENT whose
results.json was last written more than --older-than ago. Only directories with
a results.json count; one whose run or --resume is still going (it holds its
journal) is skipped and listed. A directory is renamed to .pruning-* first, so
a half-removed one is never read as results.`,
		Example: `  # keep a month of nightly results
  matrixctl cache prune-results /srv/matrixctl/nightly --older-than 30d`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, parents []string) error {
			if olderThan == "" {
				return usageErrorf("--older-than is required (e.g. 30d)")
			}
			age, err := parseAge(olderThan)
			if err != nil {
				return usageErrorf("--older-than %q: %v", olderThan, err)
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			var all []*runner.ResultsPruned
			for _, p := range parents {
				res, err := runner.PruneResults(p, age, time.Now(), dryRun)
				if err != nil {
					return withExit(ExitInfra, err)
				}
				all = append(all, res)
				if asJSON {
					continue
				}
				for _, d := range res.Removed {
					fmt.Fprintf(streams.Out, "%s %s (%s, finished %s ago)\n", verb, escapeText(d.Path), formatSize(d.Size), formatAge(time.Since(d.Finished)))
				}
				for _, d := range res.Skipped {
					fmt.Fprintf(streams.Out, "skipped %s: %s\n", escapeText(d.Path), d.Reason)
				}
				fmt.Fprintf(streams.Out, "%s %d results directories under %s, %s; skipped %d\n", verb, len(res.Removed),
					escapeText(p), formatSize(res.Freed), len(res.Skipped))
			}
			if asJSON {
				return writeJSON(streams.Out, all)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&olderThan, "older-than", "", "remove results finished longer ago than this (e.g. 30d)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be removed")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseAge is a Go duration or a whole number of days or weeks: 14d, 2w, 36h, 90m.
func parseAge(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			if err != nil || v > uint64(math.MaxInt64/unit) {
				return 0, fmt.Errorf("want a number of days (14d), weeks (2w) or a duration (36h)")
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a number of days (14d), weeks (2w) or a duration (36h)")
	}
	return d, nil
}

// sizeUnits are the suffixes parseSize takes; K, M, G, T and their
// KB/KiB spellings are all powers of 1024 (disk tools' habit).
var sizeUnits = []struct {
	suffixes []string
	shift    uint
}{
	{[]string{"TIB", "TB", "T"}, 40},
	{[]string{"GIB", "GB", "G"}, 30},
	{[]string{"MIB", "MB", "M"}, 20},
	{[]string{"KIB", "KB", "K"}, 10},
	{[]string{"B", ""}, 0},
}

// parseSize reads 50G, 1.5TiB, 500M, 0 as bytes.
func parseSize(s string) (int64, error) {
	up := strings.ToUpper(strings.TrimSpace(s))
	for _, u := range sizeUnits {
		for _, suf := range u.suffixes {
			n, ok := strings.CutSuffix(up, suf)
			if !ok || n == "" {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*float64(uint64(1)<<u.shift) > math.MaxInt64/2 {
				return 0, fmt.Errorf("want a size such as 50G, 500MiB or 0")
			}
			return int64(v * float64(uint64(1)<<u.shift)), nil
		}
	}
	return 0, fmt.Errorf("want a size such as 50G, 500MiB or 0")
}

// formatSize is bytes in binary units, one decimal.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// formatAge is a coarse age: 45s, 12m, 5h, 3d.
func formatAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
