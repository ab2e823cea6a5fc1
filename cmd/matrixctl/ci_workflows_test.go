package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/mattn/go-shellwords"
	"github.com/rhysd/actionlint"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/matrixctl/matrixctl/internal/testutil"
)

// The fan-out workflows users copy (README "CI fan-out"), and the schema the
// GitLab one is checked against (its origin: ci/gitlab/testdata/SOURCE).
const (
	githubWorkflow = "../../ci/github/matrixctl.yml"
	gitlabPipeline = "../../ci/gitlab/matrixctl.gitlab-ci.yml"
	gitlabSchema   = "../../ci/gitlab/testdata/gitlab-ci.schema.json"
)

// TestGitHubWorkflowLints runs actionlint (as a library: no binary to
// install, its version pinned in go.mod) over the GitHub workflow: workflow
// syntax, expressions and their contexts, the matrix, needs, action inputs,
// and with shellcheck (a required tool in CI) every run: script. A copy
// with planted mistakes must draw findings, so a linter that checks nothing
// cannot pass.
func TestGitHubWorkflowLints(t *testing.T) {
	content, err := os.ReadFile(githubWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	shellcheck := ""
	t.Run("shellcheck", func(t *testing.T) { testutil.RequiresBinary(t, "shellcheck") })
	if p, err := exec.LookPath("shellcheck"); err == nil {
		shellcheck = p
	}
	findings := actionlintFindings(t, content, shellcheck)
	for _, f := range findings {
		t.Errorf("actionlint: %s", f)
	}
	t.Logf("actionlint (shellcheck %q): %d findings", shellcheck, len(findings))

	planted := map[string]string{
		"needs.plan.outputs.matrix": "needs.plan.outputs.matrixx", // an output that does not exist
		"fail-fast: false":          "fail-fast: no",              // not a boolean
	}
	if shellcheck != "" {
		planted[`--shard "$SHARD"`] = `--shard $SHARD` // SC2086: unquoted
	}
	for from, to := range planted {
		if !bytes.Contains(content, []byte(from)) {
			t.Fatalf("planted mistake: %q not in the workflow", from)
		}
		if got := actionlintFindings(t, bytes.Replace(content, []byte(from), []byte(to), 1), shellcheck); len(got) == 0 {
			t.Errorf("actionlint found nothing wrong after %q → %q", from, to)
		}
	}
}

// actionlintFindings lints a GitHub workflow's content.
func actionlintFindings(t *testing.T, content []byte, shellcheck string) []string {
	t.Helper()
	var log bytes.Buffer
	l, err := actionlint.NewLinter(&log, &actionlint.LinterOptions{Shellcheck: shellcheck})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(githubWorkflow, content, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// TestGitLabPipelineMatchesSchema validates the GitLab pipeline against
// GitLab's CI JSON schema (a copy: ci/gitlab/testdata/SOURCE), then checks
// what the schema cannot: the fan-out's own wiring, and that every script is
// valid shell. A copy with a planted mistake must fail the schema.
func TestGitLabPipelineMatchesSchema(t *testing.T) {
	content, err := os.ReadFile(gitlabPipeline)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := os.Open(gitlabSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(sf)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("gitlab-ci.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("gitlab-ci.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(content []byte) error {
		js, err := yaml.YAMLToJSON(content)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
		if err != nil {
			return err
		}
		return schema.Validate(doc)
	}
	if err := validate(content); err != nil {
		t.Errorf("%s against GitLab's CI schema: %v", gitlabPipeline, err)
	}
	for from, to := range map[string]string{
		"when: always\n  # The history": "when: sometimes\n  # The history", // not a when: value
		"exit_codes: [1]":               "exit_codes: one",                  // not an exit code
		"expire_in: 1 day":              "expires_in: 1 day",                // not an artifacts key
	} {
		if !bytes.Contains(content, []byte(from)) {
			t.Fatalf("planted mistake: %q not in the pipeline", from)
		}
		if validate(bytes.Replace(content, []byte(from), []byte(to), 1)) == nil {
			t.Errorf("the schema accepted %q → %q", from, to)
		}
	}

	jobs := gitlabJobs(t, content)
	job := func(name string) map[string]any {
		j, ok := jobs[name]
		if !ok {
			t.Fatalf("no job %q", name)
		}
		return j
	}
	if run := job("run"); run["parallel"] == nil || !strings.Contains(jobScript(run), `--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"`) {
		t.Errorf("job run: want parallel: N and --shard $CI_NODE_INDEX/$CI_NODE_TOTAL")
	}
	if rep := job("report"); rep["when"] != "always" || !strings.Contains(jobScript(rep), "--fail-on regressions") {
		t.Errorf("job report: want when: always and the --fail-on regressions gate")
	}
	for name, j := range jobs {
		if s := jobScript(j); s != "" {
			if out, err := exec.Command("bash", "-n", "-c", s).CombinedOutput(); err != nil {
				t.Errorf("job %s: script is not valid shell: %v\n%s", name, err, out)
			}
		}
	}
}

// jobScript is a GitLab job's script lines as one shell script.
func jobScript(job map[string]any) string {
	var b strings.Builder
	for _, key := range []string{"before_script", "script", "after_script"} {
		lines, _ := job[key].([]any)
		for _, l := range lines {
			s, _ := l.(string)
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}

// TestWorkflowCommandsExist parses every matrixctl command line out of both
// workflows and parses it with the real CLI: the subcommand and each flag
// must exist, the choice flags' values must be among the choices, and the
// arguments must be what the command accepts. A renamed flag or subcommand
// breaks this test before it breaks a user's nightly job; copies with such
// a rename planted must fail it.
func TestWorkflowCommandsExist(t *testing.T) {
	for _, tc := range []struct {
		file  string
		lines func(t *testing.T, content []byte) []string
	}{
		{githubWorkflow, githubRunLines},
		{gitlabPipeline, gitlabScriptLines},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			content, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			check := func(content []byte) (problems, seen []string) {
				for _, line := range tc.lines(t, content) {
					for _, args := range matrixctlCommands(line) {
						if err := checkCommand(args); err != nil {
							problems = append(problems, err.Error())
						}
						seen = append(seen, args[0])
					}
				}
				return problems, seen
			}
			problems, seen := check(content)
			for _, p := range problems {
				t.Error(p)
			}
			for _, want := range []string{"plan", "run", "merge", "report"} {
				if !slices.Contains(seen, want) {
					t.Errorf("no matrixctl %s found (found %v): the workflow or this parser changed", want, seen)
				}
			}
			t.Logf("%d matrixctl commands checked: %v", len(seen), seen)
			for from, to := range map[string]string{
				"--fail-on regressions": "--fail-on regression", // not a choice
				"--history none":        "--no-history",         // no such flag
				"matrixctl merge -o":    "matrixctl combine -o", // no such command
				"--format markdown":     "--format md",          // not a choice
			} {
				if !bytes.Contains(content, []byte(from)) {
					t.Fatalf("planted mistake: %q not in the workflow", from)
				}
				if p, _ := check(bytes.ReplaceAll(content, []byte(from), []byte(to))); len(p) == 0 {
					t.Errorf("no problem found after %q → %q", from, to)
				}
			}
		})
	}
}

// githubRunLines returns the run: scripts of every step of every job.
func githubRunLines(t *testing.T, content []byte) []string {
	var w struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(content, &w); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range w.Jobs {
		for _, s := range j.Steps {
			out = append(out, s.Run)
		}
	}
	return out
}

// gitlabJobs returns the jobs of a GitLab pipeline: its top-level mappings
// other than the global keywords.
func gitlabJobs(t *testing.T, content []byte) map[string]map[string]any {
	t.Helper()
	var top map[string]any
	if err := yaml.Unmarshal(content, &top); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]map[string]any{}
	for name, v := range top {
		m, ok := v.(map[string]any)
		if ok && !slices.Contains([]string{"default", "include", "stages", "variables", "workflow", "spec"}, name) {
			jobs[name] = m
		}
	}
	return jobs
}

// gitlabScriptLines returns the scripts of every job.
func gitlabScriptLines(t *testing.T, content []byte) []string {
	var out []string
	for _, j := range gitlabJobs(t, content) {
		out = append(out, jobScript(j))
	}
	return out
}

// An expansion, a GitHub expression or a shell variable, stands for a value
// that parses as any flag's: "1" (a number, a path, a word; "$I/$N" is a
// shard).
var expansion = regexp.MustCompile(`\$\{\{[^}]*\}\}|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// matrixctlCommands returns the arguments of each matrixctl command in a
// shell script (after the program name, up to a redirection, pipe or list
// operator). Variables stay as written: flag names are what is checked.
func matrixctlCommands(script string) [][]string {
	var out [][]string
	script = strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if inner, ok := substitution(line); ok {
			line = inner // the command whose output the line uses
		}
		line = expansion.ReplaceAllString(line, "1")
		p := shellwords.NewParser()
		p.ParseEnv = false
		p.ParseBacktick = false
		words, err := p.Parse(line)
		if err != nil || len(words) == 0 {
			continue
		}
		for i, w := range words {
			if filepath.Base(w) != "matrixctl" || i+1 >= len(words) {
				continue
			}
			args := words[i+1:]
			if j := slices.IndexFunc(args, func(a string) bool {
				return slices.Contains([]string{">", ">>", "|", "&&", "||", ";", "2>&1"}, a)
			}); j >= 0 {
				args = args[:j]
			}
			out = append(out, args)
			break
		}
	}
	return out
}

// choices are the flags with a closed set of values, checked against the
// words of the flag's own usage text.
var choices = []string{"format", "fail-on", "progress", "provider"}

// checkCommand parses args with matrixctl's real command tree.
func checkCommand(args []string) error {
	line := "matrixctl " + strings.Join(args, " ")
	root := newRootCommand(Streams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		return fmt.Errorf("%s: no such command (%v)", line, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	for _, name := range choices {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		words := strings.FieldsFunc(f.Usage, func(r rune) bool { return strings.ContainsRune(" ,:()", r) })
		if !slices.Contains(words, f.Value.String()) {
			return fmt.Errorf("%s: --%s %s is not among %q", line, name, f.Value, f.Usage)
		}
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	return nil
}

// substitution returns the command inside a line's first $( ... ).
func substitution(line string) (string, bool) {
	i := strings.Index(line, "$(")
	if i < 0 {
		return "", false
	}
	depth := 0
	for j := i + 1; j < len(line); j++ {
		switch line[j] {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return line[i+2 : j], true
			}
		}
	}
	return "", false
}
