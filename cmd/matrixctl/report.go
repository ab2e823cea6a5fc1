package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/reports"
	"github.com/matrixctl/matrixctl/reports/history"
)

type reportFlags struct {
	Format  string
	Output  string
	History string
	Since   string
	FailOn  string
}

func newReportCommand(g *globalFlags, streams Streams) *cobra.Command {
	flags := &reportFlags{}
	cmd := &cobra.Command{
		Use:   "report DIR",
		Short: "rank the cells of a results directory and write an html, json, junit or markdown report",
		Long: `report reads DIR/results.json and the artifacts it points at, ranks the cells
(stability first, then performance; the method is explained in the report) and writes:

  html      one self-contained page (default: DIR/report.html)
  json      the report in its versioned schema (matrixctl.report/v1)
  junit     one testcase per cell run, for CI
  markdown  a short summary for a chat message or a PR comment

With a history database (default <cache>/history.db, written by matrixctl run) the report
shows each cell's trend and flags regressions (passed before, fails now) and fixes.

Exit codes: 0 report written (and nothing failed per --fail-on), 1 failing per --fail-on,
2 usage error or unreadable results.`,
		Example: `  matrixctl report results
  matrixctl report results --format junit -o junit.xml
  matrixctl report results --format markdown -o - --since 7d
  matrixctl report results --fail-on regressions   # nightly job`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), g, streams, flags, args[0], cmd.Flags().Changed("history"))
		},
	}
	cmd.Flags().StringVar(&flags.Format, "format", "html", "output format: html, json, junit or markdown")
	cmd.Flags().StringVarP(&flags.Output, "output", "o", "", "output file, - for stdout (default DIR/report.html or DIR/report.<ext>)")
	cmd.Flags().StringVar(&flags.History, "history", "", "history database (default <cache>/history.db when it exists; none to disable)")
	cmd.Flags().StringVar(&flags.Since, "since", "", "consider history since this long ago, e.g. 7d, 36h (default all)")
	cmd.Flags().StringVar(&flags.FailOn, "fail-on", "never", "exit 1 on: regressions, failures or never")
	return cmd
}

// reportExt is the default file extension per format.
func reportExt(format string) (string, bool) {
	ext, ok := map[string]string{"html": "html", "json": "json", "junit": "junit.xml", "markdown": "md"}[format]
	return ext, ok
}

// parseSince accepts Go durations plus a "d" (days) suffix.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("--since %q: want a duration like 7d or 36h", s)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want a duration like 7d or 36h", s)
	}
	return now.Add(-d), nil
}

func runReport(ctx context.Context, g *globalFlags, streams Streams, flags *reportFlags, dir string, historySet bool) error {
	ext, ok := reportExt(flags.Format)
	if !ok {
		return usageErrorf("--format %q: want html, json, junit or markdown", flags.Format)
	}
	switch flags.FailOn {
	case "never", "failures", "regressions":
	default:
		return usageErrorf("--fail-on %q: want regressions, failures or never", flags.FailOn)
	}
	since, err := parseSince(flags.Since, time.Now())
	if err != nil {
		return withExit(ExitUsage, err)
	}
	f, err := reports.Load(dir)
	if err != nil {
		return withExit(ExitUsage, err)
	}
	opts := reports.Options{Dir: dir, Since: since}
	histPath := flags.History
	if histPath == "" {
		histPath = history.DefaultPath(g.Cache)
	}
	if histPath != "none" {
		_, statErr := os.Stat(histPath)
		switch {
		case statErr == nil:
			store, err := history.Open(histPath)
			if err != nil {
				return withExit(ExitUsage, err)
			}
			defer store.Close()
			opts.History = store
		case historySet || !errors.Is(statErr, fs.ErrNotExist):
			return withExit(ExitUsage, fmt.Errorf("--history: %w", statErr))
		}
	}
	if flags.FailOn == "regressions" && opts.History == nil {
		return usageErrorf("--fail-on regressions needs a history database (--history)")
	}
	rep, err := reports.Build(ctx, f, opts)
	if err != nil {
		return withExit(ExitUsage, err)
	}
	out := flags.Output
	if out == "" {
		out = filepath.Join(dir, "report."+ext)
	}
	write := func(w io.Writer) error {
		switch flags.Format {
		case "json":
			return rep.WriteJSON(w)
		case "junit":
			return rep.WriteJUnit(w)
		case "markdown":
			return rep.WriteMarkdown(w)
		}
		base, err := linkBase(out, dir)
		if err != nil {
			return err
		}
		return rep.WriteHTML(w, reports.HTMLOptions{LinkBase: base})
	}
	if out == "-" {
		err = write(streams.Out)
	} else {
		err = writeFileAtomic(out, write)
		if err == nil && g.Verbose {
			fmt.Fprintf(streams.ErrOut, "wrote %s\n", out)
		}
	}
	if err != nil {
		return withExit(ExitInfra, err)
	}
	switch {
	case flags.FailOn == "regressions" && len(rep.Regressions) > 0:
		return withExit(ExitFailed, fmt.Errorf("%d regressions", len(rep.Regressions)))
	case flags.FailOn == "failures" && rep.Failures() > 0:
		return withExit(ExitFailed, fmt.Errorf("%d failed runs", rep.Failures()))
	}
	return nil
}

// linkBase is the results dir relative to the directory of the HTML file.
func linkBase(out, dir string) (string, error) {
	if out == "-" {
		return filepath.ToSlash(dir), nil
	}
	absOut, err := filepath.Abs(filepath.Dir(out))
	if err != nil {
		return "", err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(absOut, absDir)
	if err != nil {
		return filepath.ToSlash(absDir), nil
	}
	if rel == "." {
		return "", nil
	}
	return filepath.ToSlash(rel), nil
}

// writeFileAtomic writes via a temp file in the same directory and renames it.
func writeFileAtomic(name string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
