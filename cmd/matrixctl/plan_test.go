package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/matrixctl/matrixctl/internal/kconfig"
	"github.com/matrixctl/matrixctl/matrix"
)

const (
	exampleSpec    = "../../matrix.yaml"
	oldKernelsSpec = "../../matrix/testdata/valid-old-kernels.yaml"
)

func TestPlanExample(t *testing.T) {
	code, out, errOut := run(t, "plan", "-f", exampleSpec)
	if code != ExitOK {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	// Column widths follow the longest ID: compare with single blanks.
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"k6.1-debian12-docker20.10.24-overlay2-scratch-xfs runnable scratch xfs -n ftype=1",
		"k6.12-debian13-docker26.1.5-aufs unsupported the aufs driver was removed in Docker 24.0",
		"k5.10-debian11-docker20.10.5-aufs runnable pending: CONFIG_AUFS_FS=y|m or module aufs",
		"docker 26.1.5 has no docker.io package for debian12",
		"20 cells: 16 runnable",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func planJSON(t *testing.T, args ...string) matrix.PlanJSON {
	t.Helper()
	code, out, errOut := run(t, append([]string{"plan", "--format", "json"}, args...)...)
	if code != ExitOK {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	var p matrix.PlanJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	return p
}

func TestPlanKernel316Aufs(t *testing.T) {
	all := planJSON(t, "-f", oldKernelsSpec)
	got := planJSON(t, "-f", oldKernelsSpec, "--kernel", "3.16", "--driver", "aufs")
	var want, gotIDs []string
	for _, c := range all.Cells {
		if strings.HasPrefix(c.Kernel, "3.16.") && c.Driver == "aufs" {
			want = append(want, c.ID)
		}
	}
	for _, c := range got.Cells {
		gotIDs = append(gotIDs, c.ID)
		if c.Status != matrix.StatusRunnable || len(c.Pending) != 1 || c.Pending[0].Module != "aufs" {
			t.Errorf("cell %s: status %s pending %v; want runnable with the aufs kernel check", c.ID, c.Status, c.Pending)
		}
	}
	if len(want) != 4 || !slices.Equal(gotIDs, want) {
		t.Errorf("selected %v, want %v", gotIDs, want)
	}
}

func TestPlanUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"kernel 99", []string{"-f", exampleSpec, "--kernel", "99"}, "--kernel 99: selects no cell; kernels in the plan: 5.10, 6.1, 6.12"},
		{"no match together", []string{"-f", exampleSpec, "--kernel", "5.10", "--distro", "debian13"}, "no cell matches --kernel 5.10 --distro debian13 together"},
		{"bad constraint", []string{"-f", exampleSpec, "--docker", ">>24"}, "--docker >>24: want a version"},
		{"bad spec", []string{"-f", "../../matrix/testdata/invalid-unknown-driver.yaml"}, `invalid-unknown-driver.yaml:9:22: axes.driver[1]: unknown storage driver "overlay3"`},
		{"missing spec", []string{"-f", "no-such.yaml"}, "no-such.yaml: read spec: no such file or directory"},
		{"format", []string{"-f", exampleSpec, "--format", "xml"}, `--format "xml": want table, json or github-matrix`},
		{"shard", []string{"-f", exampleSpec, "--shard", "0/3"}, "--shard 0/3: want i/n"},
		{"shards without github-matrix", []string{"-f", exampleSpec, "--shards", "3"}, "--shards goes with --format github-matrix"},
		{"argument", []string{"-f", exampleSpec, "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, append([]string{"plan"}, tc.args...)...)
			if code != ExitUsage || !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("code %d, stdout %q, stderr %q; want %d with %q", code, out, errOut, ExitUsage, tc.want)
			}
		})
	}
}

func TestPlanShardsCoverThePlan(t *testing.T) {
	all := planJSON(t, "-f", exampleSpec)
	for n := 1; n <= 7; n++ {
		var union []string
		for i := 1; i <= n; i++ {
			for _, c := range planJSON(t, "-f", exampleSpec, "--shard", strings.Join([]string{strconv.Itoa(i), strconv.Itoa(n)}, "/")).Cells {
				union = append(union, c.ID)
			}
		}
		var want []string
		for _, c := range all.Cells {
			want = append(want, c.ID)
		}
		slices.Sort(union)
		slices.Sort(want)
		if !slices.Equal(union, want) {
			t.Errorf("n=%d: union of shards %v\nwant %v", n, union, want)
		}
	}
}

func TestPlanGitHubMatrix(t *testing.T) {
	code, out, errOut := run(t, "plan", "-f", exampleSpec, "--format", "github-matrix", "--shards", "3")
	if code != ExitOK {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var m struct {
		Include []struct {
			Shard    string `json:"shard"`
			Cells    int    `json:"cells"`
			Runnable int    `json:"runnable"`
		} `json:"include"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("%v: %q", err, out)
	}
	total, runnable := 0, 0
	for i, e := range m.Include {
		if e.Shard != strconv.Itoa(i+1)+"/3" {
			t.Errorf("entry %d: shard %q", i, e.Shard)
		}
		total += e.Cells
		runnable += e.Runnable
	}
	if total != 20 || runnable != 16 {
		t.Errorf("shards hold %d cells (%d runnable), want 20 (16)", total, runnable)
	}

	code, out, _ = run(t, "plan", "-f", exampleSpec, "--format", "github-matrix", "--driver", "vfs")
	want := `{"include":[{"cell":"k5.10-debian11-docker20.10.5-vfs","distro":"debian11","docker":"20.10.5","driver":"vfs","kernel":"5.10"},` +
		`{"cell":"k6.1-debian12-docker20.10.24-vfs","distro":"debian12","docker":"20.10.24","driver":"vfs","kernel":"6.1"},` +
		`{"cell":"k6.12-debian13-docker26.1.5-vfs","distro":"debian13","docker":"26.1.5","driver":"vfs","kernel":"6.12"}]}` + "\n"
	if code != ExitOK || out != want {
		t.Errorf("code %d, got\n%s\nwant\n%s", code, out, want)
	}
}

// fakeCachedKernel imports nothing: it writes a kernel cache entry as
// internal/images leaves one (manifest, config, module tree) for bookworm's
// linux-image-amd64, with every symbol of the preflight table but the
// listed ones, tristates as modules.
func fakeCachedKernel(t *testing.T, cache, release string, drop ...string) {
	t.Helper()
	dir := filepath.Join(cache, "kernels", "fake")
	modDir := filepath.Join("root", "lib", "modules", release)
	if err := os.MkdirAll(filepath.Join(dir, modDir, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	for _, r := range kconfig.Table() {
		for _, s := range r.Symbols {
			switch {
			case slices.Contains(drop, s.Config):
				cfg.WriteString("# " + s.Config + " is not set\n")
			case s.Module != "":
				cfg.WriteString(s.Config + "=m\n")
				if err := os.WriteFile(filepath.Join(dir, modDir, "kernel", s.Module+".ko"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			default:
				cfg.WriteString(s.Config + "=y\n")
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := map[string]any{
		"format": 1, "kind": "kernels", "created": "2026-12-01T00:00:00Z",
		"inputs": map[string]string{"suite": "bookworm", "package": "linux-image-" + release},
		"kernel": map[string]string{"release": release, "version": "6.1.99", "vmlinuz": "vmlinuz",
			"modules_dir": modDir, "modules_image": "modules.ext4", "config": "config"},
		"files": []map[string]any{{"path": "config", "size": cfg.Len(), "sha256": ""}},
	}
	b, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPlanPreflight: the cells whose kernel is in the cache show the
// runner's kernel preflight; the others show none, and nothing is fetched.
func TestPlanPreflight(t *testing.T) {
	cache := t.TempDir()
	fakeCachedKernel(t, cache, "6.1.0-99-amd64", "CONFIG_AUFS_FS", "CONFIG_SECCOMP_FILTER")
	code, out, errOut := run(t, "plan", "-f", exampleSpec, "--cache", cache, "--driver", "overlay2,aufs,vfs")
	if code != ExitOK {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	seccomp := "seccomp profiles (dockerd runs containers unconfined without them) needs CONFIG_SECCOMP, CONFIG_SECCOMP_FILTER: CONFIG_SECCOMP_FILTER is not set " +
		"[Docker docs: Seccomp security profiles for Docker, https://docs.docker.com/engine/security/seccomp/]"
	var lines []string // with single blanks between columns
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"k6.1-debian12-docker20.10.24-overlay2-scratch-xfs runnable scratch xfs -n ftype=1; preflight: 1 warning (kernel 6.1.0-99-amd64): " + seccomp,
		"k6.1-debian12-docker20.10.24-aufs runnable pending: CONFIG_AUFS_FS=y|m or module aufs; preflight: unsupported: kernel 6.1.0-99-amd64: " +
			"the kernel has no aufs (CONFIG_AUFS_FS, module aufs): aufs is not in mainline and needs an AUFS-patched kernel",
		"k5.10-debian11-docker20.10.5-vfs runnable", // its kernel is not cached
		"kernel preflight of the runnable cells whose kernel is cached: 0 ok, 2 with warnings, 1 unsupported, 0 unreadable",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("output lacks the line %q:\n%s", want, out)
		}
	}

	p := planJSON(t, "-f", exampleSpec, "--cache", cache, "--kernel", "6.1", "--driver", "aufs")
	if len(p.Cells) != 1 || p.Cells[0].Preflight == nil {
		t.Fatalf("cells %+v: want the 6.1 aufs cell with a preflight", p.Cells)
	}
	if pf := p.Cells[0].Preflight; pf.Kernel != "6.1.0-99-amd64" || pf.Status != matrix.PreflightUnsupported || !strings.Contains(pf.Reason, "no aufs") {
		t.Errorf("preflight %+v", pf)
	}
	if entries, _ := os.ReadDir(cache); len(entries) != 1 {
		t.Errorf("plan wrote into the cache: %v", entries)
	}
}
