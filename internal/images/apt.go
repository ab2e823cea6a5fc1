package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// KeyringPath is the host's Debian archive keyring; it covers bullseye,
// bookworm and trixie.
const KeyringPath = "/usr/share/keyrings/debian-archive-keyring.gpg"

// securitySuites are the codenames whose security archive uses the
// "<codename>-security" layout (bullseye and later).
var securitySuites = map[string]bool{"bullseye": true, "bookworm": true, "trixie": true, "forky": true}

// MirrorError says a mirror could not be reached, or does not carry a suite.
type MirrorError struct {
	Mirror string
	Suite  string
	// Missing is true when the mirror answered but has no such suite (404).
	Missing bool
	Err     error
}

func (e *MirrorError) Error() string {
	if e.Missing {
		return fmt.Sprintf("mirror %s has no suite %s: %v", e.Mirror, e.Suite, e.Err)
	}
	return fmt.Sprintf("mirror %s unreachable: %v", e.Mirror, e.Err)
}

func (e *MirrorError) Unwrap() error { return e.Err }

// ErrNotFound is matched (errors.Is) by a PackageError.
var ErrNotFound = errors.New("not found")

// PackageError says a suite has no package, or not in the wanted version.
type PackageError struct {
	Suite   string
	Package string
	Want    string   // wanted version or release line; empty: any
	Have    []string // versions the suite has, empty when it has none
}

func (e *PackageError) Error() string {
	msg := fmt.Sprintf("suite %s has no package %s", e.Suite, e.Package)
	if e.Want != "" {
		msg += " version " + e.Want
	}
	if len(e.Have) > 0 {
		msg += " (it has " + strings.Join(e.Have, ", ") + ")"
	}
	return msg
}

func (e *PackageError) Is(target error) bool { return target == ErrNotFound }

// sourceLines is the sources.list of a private apt environment for suite:
// "<base> main", "<base>-updates main", "<base>-security main" where the
// security archive exists, and the suite itself when it is a backports suite.
func sourceLines(m Mirrors, suite string) []string {
	opt := ""
	if _, err := os.Stat(KeyringPath); err == nil {
		opt = "[signed-by=" + KeyringPath + "] "
	}
	base, _, _ := strings.Cut(suite, "-")
	lines := []string{
		"deb " + opt + m.Debian + " " + base + " main",
		"deb " + opt + m.Debian + " " + base + "-updates main",
	}
	if m.Security != "" && securitySuites[base] {
		lines = append(lines, "deb "+opt+m.Security+" "+base+"-security main")
	}
	if suite != base {
		lines = append(lines, "deb "+opt+m.Debian+" "+suite+" main")
	}
	return lines
}

// aptEnv is a private apt configuration and state for one suite inside the
// cache: the host's apt state and configuration are never read or written
// (only its keyring and its mirror URIs).
type aptEnv struct {
	c     *Cache
	suite string
	dir   string
	list  string // sources.list content
}

func (a *aptEnv) opts() []string {
	o := []string{
		"Dir::State=" + filepath.Join(a.dir, "state"),
		"Dir::State::status=" + filepath.Join(a.dir, "state", "status"),
		"Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"Dir::Etc::SourceParts=/dev/null",
		"Dir::Etc::Preferences=/dev/null",
		"Dir::Etc::PreferencesParts=/dev/null",
		"Dir::Etc::Parts=/dev/null",
		"Dir::Log=" + filepath.Join(a.dir, "log"),
		"APT::Architecture=amd64",
		"APT::Architectures=amd64",
		"APT::Sandbox::User=root",
		"Acquire::Languages=none",
	}
	if strings.Contains(a.suite, "-") {
		// A backports suite is NotAutomatic: prefer it explicitly.
		o = append(o, "APT::Default-Release="+a.suite)
	}
	argv := make([]string, 0, 2*len(o))
	for _, v := range o {
		argv = append(argv, "-o", v)
	}
	return argv
}

// aptFor returns the private apt environment for suite, with fresh indexes:
// `apt-get update` runs at most once per suite per Cache, and not at all when
// the indexes are younger than the cache's AptMaxAge (across runs).
func (c *Cache) aptFor(ctx context.Context, suite string) (*aptEnv, error) {
	if suite == "" || strings.ContainsAny(suite, "/ \t\n") || strings.HasPrefix(suite, ".") {
		return nil, fmt.Errorf("invalid suite %q", suite)
	}
	m, err := c.Mirrors()
	if err != nil {
		return nil, err
	}
	lines := sourceLines(m, suite)
	list := strings.Join(lines, "\n") + "\n"
	sum := sha256.Sum256([]byte(list))
	a := &aptEnv{c: c, suite: suite, dir: filepath.Join(c.dir, "apt", suite), list: list}
	for _, d := range []string{"state/lists/partial", "cache/archives/partial", "log"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	unlock, err := LockFile(ctx, filepath.Join(a.dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	stamp := filepath.Join(a.dir, "updated")
	c.mu.Lock()
	done := c.aptUpdated[suite]
	c.mu.Unlock()
	if done {
		return a, nil
	}
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < c.opts.aptMaxAge {
		if b, _ := os.ReadFile(stamp); string(b) == hex.EncodeToString(sum[:]) {
			c.mu.Lock()
			c.aptUpdated[suite] = true
			c.mu.Unlock()
			return a, nil
		}
	}
	if err := a.update(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// update runs apt-get update for the environment (the caller holds its lock).
func (a *aptEnv) update(ctx context.Context) error {
	c := a.c
	if err := writeFileAtomic(filepath.Join(a.dir, "sources.list"), []byte(a.list)); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(a.dir, "state", "status"), nil); err != nil {
		return err
	}
	c.progressf("apt: updating indexes for %s\n", a.suite)
	t := time.Now()
	argv := append([]string{"apt-get"}, a.opts()...)
	argv = append(argv, "-q", "--error-on=any", "update")
	if _, err := run(ctx, proc.Cmd{Argv: argv}); err != nil {
		return classifyAptError(c.mirrors, a.suite, err)
	}
	c.progressf("apt: indexes for %s updated in %s\n", a.suite, since(t))
	c.stats.aptUpdates.Add(1)
	sum := sha256.Sum256([]byte(a.list))
	if err := writeFileAtomic(filepath.Join(a.dir, "updated"), []byte(hex.EncodeToString(sum[:]))); err != nil {
		return err
	}
	c.mu.Lock()
	c.aptUpdated[a.suite] = true
	c.mu.Unlock()
	return nil
}

// aptFailure patterns: apt-get's own words for an unreachable mirror and for
// a suite the mirror does not carry. Matching tool output is unavoidable here;
// it is kept in this one table.
var aptFailure = []struct {
	substr  string
	missing bool
}{
	{"does not have a Release file", true},
	{"404  Not Found", true},
	{"404 Not Found", true},
	{"Could not resolve", false},
	{"Temporary failure resolving", false},
	{"Could not connect", false},
	{"Connection failed", false},
	{"Connection timed out", false},
	{"Unable to connect", false},
	{"No route to host", false},
	{"Connection refused", false},
	{"Failed to fetch", false},
}

func classifyAptError(m Mirrors, suite string, err error) error {
	var ee *proc.Error
	if !errors.As(err, &ee) || ee.ExitCode < 0 {
		return err
	}
	for _, f := range aptFailure {
		if !strings.Contains(ee.Output, f.substr) {
			continue
		}
		mirror := m.Debian
		if m.Security != "" && strings.Contains(ee.Output, m.Security) && !strings.Contains(ee.Output, m.Debian+" ") {
			mirror = m.Security
		}
		return &MirrorError{Mirror: mirror, Suite: suite, Missing: f.missing, Err: err}
	}
	return err
}

// pkgRecord is one package stanza from apt-cache show.
type pkgRecord struct {
	Package, Version, Depends, Filename, SHA256 string
	Size                                        string
}

// show returns the candidate record of pkg (all=false) or every version (all=true).
func (a *aptEnv) show(ctx context.Context, pkg string, all bool) ([]pkgRecord, error) {
	unlock, err := LockFile(ctx, filepath.Join(a.dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	argv := append([]string{"apt-cache"}, a.opts()...)
	argv = append(argv, "show")
	if !all {
		argv = append(argv, "--no-all-versions")
	}
	argv = append(argv, pkg)
	var stdout strings.Builder
	if _, err := run(ctx, proc.Cmd{Argv: argv, Stdout: &stdout}); err != nil {
		var ee *proc.Error
		if errors.As(err, &ee) && (strings.Contains(ee.Output, "No packages found") || strings.Contains(ee.Output, "Unable to locate")) {
			return nil, &PackageError{Suite: a.suite, Package: pkg}
		}
		return nil, err
	}
	paras, err := parseParagraphs("apt-cache show "+pkg, []byte(stdout.String()))
	if err != nil {
		return nil, err
	}
	var recs []pkgRecord
	for _, p := range paras {
		f := p.fields
		if f["package"] != pkg || f["version"] == "" {
			continue
		}
		recs = append(recs, pkgRecord{Package: f["package"], Version: f["version"], Depends: f["depends"],
			Filename: f["filename"], SHA256: f["sha256"], Size: f["size"]})
	}
	if len(recs) == 0 {
		return nil, &PackageError{Suite: a.suite, Package: pkg}
	}
	return recs, nil
}

// download fetches pkg=version into dir and checks its SHA256 against the index.
func (a *aptEnv) download(ctx context.Context, rec pkgRecord, dir string) (string, error) {
	unlock, err := LockFile(ctx, filepath.Join(a.dir, "lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	argv := append([]string{"apt-get"}, a.opts()...)
	argv = append(argv, "-q", "download", rec.Package+"="+rec.Version)
	cmd := proc.Cmd{Argv: argv, Dir: dir}
	if _, err := runShowing(ctx, cmd, a.c.opts.progress, "apt: "); err != nil {
		err = classifyAptError(a.c.mirrors, a.suite, err)
		var me *MirrorError
		if !errors.As(err, &me) || !me.Missing {
			return "", err
		}
		// Indexes younger than AptMaxAge can still name a file the mirror
		// has dropped since: refresh them once and retry.
		if uerr := a.update(ctx); uerr != nil {
			return "", errors.Join(err, uerr)
		}
		if _, err := runShowing(ctx, cmd, a.c.opts.progress, "apt: "); err != nil {
			return "", classifyAptError(a.c.mirrors, a.suite, err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, rec.Package+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: want one .deb in %s, found %d", rec.Package, rec.Version, dir, len(debs))
	}
	sum, _, err := hashFile(debs[0])
	if err != nil {
		return "", err
	}
	if rec.SHA256 != "" && sum != rec.SHA256 {
		return "", fmt.Errorf("%s: sha256 %s, index says %s", debs[0], sum, rec.SHA256)
	}
	a.c.stats.downloads.Add(1)
	return debs[0], nil
}
