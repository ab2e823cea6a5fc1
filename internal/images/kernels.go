package images

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/matrixctl/matrixctl/internal/proc"
)

// Release is one version of a Debian package in a suite: a kernel image
// package of a line (its name holds the ABI), or a docker.io build.
type Release struct {
	Suite   string `json:"suite"`
	Package string `json:"package"` // linux-image-6.1.0-47-amd64, docker.io
	Version string `json:"version"` // its Debian version, 6.1.153-1, 20.10.5+dfsg1-1+deb11u2
}

// Upstream is the kernel's upstream version (6.1.153).
func (k Release) Upstream() string { return UpstreamVersion(k.Version) }

// kernelFlavour matches the versioned amd64 image packages of a release
// line: linux-image-6.1.0-47-amd64 (bookworm) and linux-image-6.12.43+deb13-amd64
// (trixie); not -dbg, -unsigned, -cloud-, -rt- or metapackages.
func kernelFlavour(line string) *regexp.Regexp {
	return regexp.MustCompile(`^linux-image-` + regexp.QuoteMeta(line) + `(\.[0-9]+)*[-+][-+.0-9a-z]*?-amd64$`)
}

// KernelPackages lists the versioned amd64 kernel image packages of release
// line (6.1) that suites offer, ordered oldest first by Debian version rules;
// a package in two suites is listed once (from the first suite naming it).
func (c *Cache) KernelPackages(ctx context.Context, line string, suites ...string) ([]Release, error) {
	if line == "" || strings.ContainsAny(line, " \t\n/") {
		return nil, fmt.Errorf("invalid kernel line %q", line)
	}
	re := kernelFlavour(line)
	seen := map[string]bool{}
	var out []Release
	for _, suite := range suites {
		a, err := c.aptFor(ctx, suite)
		if err != nil {
			return nil, err
		}
		names, err := a.pkgnames(ctx, "linux-image-"+line)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if seen[name] || !re.MatchString(name) || strings.Contains(name, "-cloud-") || strings.Contains(name, "-rt-") {
				continue
			}
			recs, err := a.show(ctx, name, false)
			if err != nil {
				return nil, err
			}
			if !MatchesLine(line, UpstreamVersion(recs[0].Version)) {
				continue
			}
			seen[name] = true
			out = append(out, Release{Suite: suite, Package: name, Version: recs[0].Version})
		}
	}
	if err := SortReleases(out); err != nil {
		return nil, err
	}
	return out, nil
}

// PackageReleases lists every version of pkg (docker.io) that suite offers
// (its main, -updates and -security archives), oldest first.
func (c *Cache) PackageReleases(ctx context.Context, pkg, suite string) ([]Release, error) {
	a, err := c.aptFor(ctx, suite)
	if err != nil {
		return nil, err
	}
	recs, err := a.show(ctx, pkg, true)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Release
	for _, r := range recs {
		if !seen[r.Version] {
			seen[r.Version] = true
			out = append(out, Release{Suite: suite, Package: pkg, Version: r.Version})
		}
	}
	if err := SortReleases(out); err != nil {
		return nil, err
	}
	return out, nil
}

// SortReleases orders ks oldest first by Debian version rules.
func SortReleases(ks []Release) error {
	parsed := make(map[string]version.Version, len(ks))
	for _, k := range ks {
		v, err := version.Parse(k.Version)
		if err != nil {
			return fmt.Errorf("%s: version %q: %w", k.Package, k.Version, err)
		}
		parsed[k.Version] = v
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if c := version.Compare(parsed[ks[i].Version], parsed[ks[j].Version]); c != 0 {
			return c < 0
		}
		return ks[i].Package < ks[j].Package
	})
	return nil
}

// pkgnames is apt-cache pkgnames prefix: the package names starting with it.
func (a *aptEnv) pkgnames(ctx context.Context, prefix string) ([]string, error) {
	unlock, err := LockFile(ctx, a.dir+"/lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	argv := append([]string{"apt-cache"}, a.opts()...)
	argv = append(argv, "pkgnames", prefix)
	var stdout strings.Builder
	if _, err := run(ctx, proc.Cmd{Argv: argv, Stdout: &stdout}); err != nil {
		return nil, err
	}
	names := strings.Fields(stdout.String())
	sort.Strings(names)
	return names, nil
}
