package results

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSeverityRank keeps the severity order: fatal > error > warning > info > unknown.
func TestSeverityRank(t *testing.T) {
	order := []Severity{SevFatal, SevError, SevWarning, SevInfo, "something-new"}
	for i := 1; i < len(order); i++ {
		if order[i-1].Rank() <= order[i].Rank() {
			t.Errorf("%q (rank %d) does not outrank %q (rank %d)", order[i-1], order[i-1].Rank(), order[i], order[i].Rank())
		}
	}
}

// TestCategoryTable checks the table's invariants: each category once, each
// class a verdict, rows grouped by class in VerdictOrder (so the rank of a
// category never contradicts the order of verdicts), and Info/Rank agree
// with the rows.
func TestCategoryTable(t *testing.T) {
	rank := func(v Verdict) int {
		if v == "" {
			return len(VerdictOrder)
		}
		return slices.Index(VerdictOrder, v)
	}
	seen := map[Category]bool{}
	for i, ci := range ConsoleCategories() {
		if seen[ci.Category] {
			t.Errorf("category %s is listed twice", ci.Category)
		}
		seen[ci.Category] = true
		if rank(ci.Class) < 0 {
			t.Errorf("category %s: class %q is not a verdict", ci.Category, ci.Class)
		}
		if i > 0 && rank(categories[i-1].Class) > rank(ci.Class) {
			t.Errorf("category %s (%s) is ranked below %s (%s), whose verdict is less severe",
				ci.Category, ci.Class, categories[i-1].Category, categories[i-1].Class)
		}
		if got, ok := ci.Category.Info(); !ok || got != ci || ci.Category.Rank() != i {
			t.Errorf("category %s: Info() = %v, %v; Rank() = %d, want row %d", ci.Category, got, ok, ci.Category.Rank(), i)
		}
	}
	if _, ok := Category("something-new").Info(); ok {
		t.Error("an unknown category is in the table")
	}
}

// TestReadmeCategoryTable keeps README.md's category table equal to the code's.
func TestReadmeCategoryTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (\\d+) \\| `([a-z0-9-]+)` \\| ([a-z-]+|–) \\|$")
	var got []string
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		got = append(got, m[1]+" "+m[2]+" "+strings.ReplaceAll(m[3], "–", ""))
	}
	var want []string
	for i, ci := range ConsoleCategories() {
		want = append(want, fmt.Sprintf("%d %s %s", i, ci.Category, ci.Class))
	}
	if !slices.Equal(got, want) {
		t.Errorf("README.md category table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestKernelWarning: console findings of warning or error severity whose
// category decides nothing are kernel warnings; verdict-deciding
// categories, other sources and info findings are not.
func TestKernelWarning(t *testing.T) {
	cases := []struct {
		f    Finding
		want bool
	}{
		{Finding{Source: "console", Category: CatWarning, Severity: SevWarning}, true},
		{Finding{Source: "console", Category: CatLockdep, Severity: SevError}, true},
		{Finding{Source: "console", Category: CatOOMKill, Severity: SevError}, true},
		{Finding{Source: "console", Category: CatKmemleak, Severity: SevWarning}, true},
		{Finding{Source: "console", Category: CatWarning, Severity: SevInfo}, false},
		{Finding{Source: "console", Category: CatExt4Error, Severity: SevWarning}, false},
		{Finding{Source: "runner", Category: CatKernelConfig, Severity: SevWarning}, false},
		{Finding{Source: "runner", Category: CatFaultInjected, Severity: SevInfo}, false},
	}
	for _, c := range cases {
		if got := KernelWarning(c.f); got != c.want {
			t.Errorf("KernelWarning(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
	r := Run{Findings: []Finding{cases[0].f, cases[5].f, cases[1].f}}
	if got := r.KernelWarnings(); len(got) != 2 {
		t.Errorf("KernelWarnings() = %v, want the warning and the lockdep report", got)
	}
}
