package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/runner/console"
)

type consoleFlags struct {
	Format string
}

func newConsoleCommand(_ *globalFlags, streams Streams) *cobra.Command {
	flags := &consoleFlags{}
	cmd := &cobra.Command{
		Use:   "console [--format text|jsonl] FILE...",
		Short: "find kernel crashes, hangs and filesystem damage in saved serial console logs",
		Long: `console analyses saved serial console logs ("-" reads stdin) and prints one
finding per kernel report: panics, oopses, BUGs, WARNINGs, hung tasks, lockups,
RCU stalls, lockdep and sanitizer reports, OOM kills, filesystem and block I/O
errors, machine checks and unexpected reboots.

A clean log prints nothing. Text output escapes control characters, so console
bytes cannot drive the terminal.

Exit codes: 0 no finding worse than a warning; 1 some fatal or error finding;
2 a file could not be read (it is named) or the flags are wrong.`,
		Example: `  # what went wrong in a cell's console log
  matrixctl console results/cell-1/console.log

  # machine-readable, one JSON object per finding
  matrixctl console --format jsonl results/*/console.log

  # from a pipe
  journalctl -k -o short-monotonic | matrixctl console -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return runConsole(streams, flags, args)
		},
	}
	cmd.Flags().StringVar(&flags.Format, "format", "text", "output format: text or jsonl")
	return cmd
}

func runConsole(streams Streams, flags *consoleFlags, files []string) error {
	if flags.Format != "text" && flags.Format != "jsonl" {
		return usageErrorf("--format %q: want text or jsonl", flags.Format)
	}
	var readErrs []error
	worst := 0
	for _, name := range files {
		findings, dropped, err := scanConsoleFile(streams.In, name)
		if err != nil {
			readErrs = append(readErrs, err)
			continue
		}
		for _, f := range findings {
			f.File = name
			worst = max(worst, f.Severity.Rank())
			if err := printFinding(streams.Out, flags.Format, f); err != nil {
				return err
			}
		}
		if dropped > 0 {
			fmt.Fprintf(streams.ErrOut, "matrixctl: %s: %d more findings dropped\n", escapeText(name), dropped)
		}
	}
	if len(readErrs) > 0 {
		return withExit(ExitUsage, errors.Join(readErrs...))
	}
	if worst >= results.SevError.Rank() {
		return &silentExit{code: ExitFailed}
	}
	return nil
}

func scanConsoleFile(stdin io.Reader, name string) ([]console.Finding, int, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, fmt.Errorf("read console log: %w", err)
		}
		defer f.Close()
		r = f
	}
	s := console.NewScanner(console.Options{})
	if _, err := io.Copy(s, r); err != nil {
		return nil, 0, fmt.Errorf("read console log %s: %w", name, err)
	}
	findings := s.Close()
	return findings, s.Dropped(), nil
}

func printFinding(w io.Writer, format string, f console.Finding) error {
	if format == "jsonl" {
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("encode finding: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: %s %s: %s", escapeText(f.File), f.StartLine, f.Severity, f.Category, escapeText(f.Title))
	if f.EndLine != f.StartLine {
		fmt.Fprintf(&b, " (lines %d-%d)", f.StartLine, f.EndLine)
	}
	if f.Count > 1 {
		fmt.Fprintf(&b, " (%d times)", f.Count)
	}
	if f.Corrupted {
		b.WriteString(" (report cut short)")
	}
	b.WriteByte('\n')
	for _, l := range strings.Split(strings.TrimRight(f.Excerpt, "\n"), "\n") {
		b.WriteString("    ")
		b.WriteString(escapeText(l))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// escapeText makes console text safe to print on a terminal: control
// characters (ESC, CR, BEL...) and invalid UTF-8 are shown as Go escapes.
func escapeText(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteByte('\t')
		case unicode.IsControl(r) || r == 0x7f || unicode.Is(unicode.Bidi_Control, r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
