package runner

import (
	"github.com/matrixctl/matrixctl/api/results"
	"github.com/matrixctl/matrixctl/runner/console"
)

// ConsoleAnalyzer adapts runner/console's streaming scanner to NewConsoleScanner.
func ConsoleAnalyzer() NewConsoleScanner {
	return func(onFinding func(results.Finding)) ConsoleScanner {
		a := &consoleAdapter{}
		a.s = console.NewScanner(console.Options{OnFinding: func(f console.Finding) {
			if onFinding != nil {
				onFinding(consoleFinding(f))
			}
		}})
		return a
	}
}

type consoleAdapter struct{ s *console.Scanner }

func (a *consoleAdapter) Write(p []byte) (int, error) { return a.s.Write(p) }

func (a *consoleAdapter) Close() []results.Finding {
	fs := a.s.Close()
	out := make([]results.Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, consoleFinding(f))
	}
	return out
}

func consoleFinding(f console.Finding) results.Finding {
	title := f.Title
	if f.Count > 1 {
		title += " (×" + itoa(f.Count) + ")"
	}
	if f.Corrupted {
		title += " [report cut short]"
	}
	return results.Finding{
		Source: "console", Category: f.Category, Severity: f.Severity, Title: title,
		StartLine: f.StartLine, EndLine: f.EndLine, Excerpt: f.Excerpt,
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
