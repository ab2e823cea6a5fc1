package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/matrix"
)

// StandardHostPackages are what a standard Debian install of the release
// plus `apt-get install docker.io` has that Docker relies on, beyond the
// packages mmdebstrap's minbase variant brings (Essential and Priority:
// required). Every host the project builds holds them: a cell's rootfs
// (RootfsPackages) and a Vagrant box (package vagrant). Each group says why.
var StandardHostPackages = []string{
	// A standard install's init and device manager; dbus is what systemd
	// recommends and what runc's systemd cgroup driver talks to.
	"systemd-sysv", "udev", "dbus",
	// docker.io's Depends (apt pulls them anyway; listed so that init: agent
	// finds them by name) and its Recommends that change how Docker runs:
	// apparmor (Debian kernels enable AppArmor in their default LSM list and
	// dockerd then loads docker-default with apparmor_parser; every
	// container start fails without it), ca-certificates (TLS to
	// registries), xz-utils (dockerd runs xz for xz-compressed layers). Left
	// out: git (only for build contexts from git URLs), needrestart (an apt
	// hook restarting services after upgrades), cgroupfs-mount (a sysvinit
	// helper systemd does not use).
	"containerd", "runc", "tini", "iptables", "apparmor", "ca-certificates", "xz-utils",
}

// RootfsPackages are installed into every rootfs besides the Docker package:
// the standard host, plus what the harness needs on top (which also serves
// init: agent, where the agent is PID 1). This is the one list of what a
// cell's rootfs holds.
var RootfsPackages = append(slices.Clone(StandardHostPackages),
	// docker.io's Suggests the storage drivers need: mkfs for scratch disks,
	// LVM/thin tools for devicemapper.
	"e2fsprogs", "xfsprogs", "btrfs-progs", "lvm2", "thin-provisioning-tools", "dmsetup",
	// What the guest agent calls (modprobe, ip, mount) and pigz for image loads.
	"iproute2", "kmod", "util-linux", "mount", "procps", "pigz",
)

// rootfsFormat changes whenever what a rootfs holds changes in a way its
// package list does not show, so old cached images are not reused.
// 2: a standard install with systemd as init (issue 15).
const rootfsFormat = "rootfs-2"

// DefaultDockerPackage provides the Docker engine when a DockerRef names none.
const DefaultDockerPackage = "docker.io"

// rootfsExcludes keep documentation, man pages and translations out of the image.
var rootfsExcludes = []string{
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/locale/*",
	"path-include=/usr/share/locale/locale.alias",
	"path-exclude=/usr/share/lintian/*",
}

// Rootfs returns the root filesystem image for distro with Docker
// docker.Version, building it with mmdebstrap (variant minbase) from the
// host's mirror when it is not cached. Progress (phase lines and
// mmdebstrap's output, prefixed) goes to progress, or to the Cache's
// progress writer when nil. A *PackageError says the suite has no such Docker
// version (or lacks a package), a *MirrorError that the mirror failed.
func (c *Cache) Rootfs(ctx context.Context, distro matrix.DistroRef, docker matrix.DockerRef, progress io.Writer) (*Rootfs, error) {
	return c.RootfsWith(ctx, distro, docker, matrix.PackageChanges{}, progress)
}

// RootfsWith is Rootfs with the cell's package changes applied: the added
// packages are installed with the standard set, then `apt-get remove -y`
// runs in the built tree for the removed ones, as on a real host (apt also
// removes what depends on them: removing iptables removes docker.io). The
// changes are part of the cache key, and Rootfs.PackagesAdded/Removed
// record what was installed and what apt removed. A removed Docker package
// is not an error: that host has no Docker.
func (c *Cache) RootfsWith(ctx context.Context, distro matrix.DistroRef, docker matrix.DockerRef, changes matrix.PackageChanges, progress io.Writer) (*Rootfs, error) {
	r, err := c.rootfs(ctx, distro, docker, changes, progress)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s docker %s%s: %w", distro.Name, docker.Version, changesLabel(changes), err)
	}
	return r, nil
}

// changesLabel is " (+strace -apparmor)", or "" without changes.
func changesLabel(p matrix.PackageChanges) string {
	if p.Empty() {
		return ""
	}
	return " (" + p.String() + ")"
}

func (c *Cache) rootfs(ctx context.Context, distro matrix.DistroRef, docker matrix.DockerRef, changes matrix.PackageChanges, progress io.Writer) (*Rootfs, error) {
	if progress == nil {
		progress = c.opts.progress
	}
	if progress == nil {
		progress = io.Discard
	}
	if distro.Suite == "" {
		return nil, errors.New("distro has no suite")
	}
	if os.Geteuid() != 0 {
		// mmdebstrap's other modes map ownership through subuids, which
		// mkfs.ext4 -d would copy into the image as they are.
		return nil, fmt.Errorf("building a rootfs needs root (running as uid %d)", os.Geteuid())
	}
	dockerSuite := docker.Suite
	if dockerSuite == "" {
		dockerSuite = distro.Suite
	}
	dockerPkg := docker.Package
	if dockerPkg == "" {
		dockerPkg = DefaultDockerPackage
	}
	m, err := c.Mirrors()
	if err != nil {
		return nil, err
	}
	a, err := c.aptFor(ctx, dockerSuite)
	if err != nil {
		return nil, err
	}
	recs, err := a.show(ctx, dockerPkg, true)
	if err != nil {
		return nil, err
	}
	var pick *pkgRecord
	var have []string
	for i, r := range recs {
		have = append(have, r.Version)
		if pick == nil && (UpstreamVersion(r.Version) == docker.Version || r.Version == docker.Version) {
			pick = &recs[i]
		}
	}
	if pick == nil {
		return nil, &PackageError{Suite: dockerSuite, Package: dockerPkg, Want: docker.Version, Have: have}
	}
	pkgs := append([]string(nil), RootfsPackages...)
	sort.Strings(pkgs)
	if len(changes.Add) > 0 {
		pkgs = append(pkgs, changes.Add...)
		sort.Strings(pkgs)
		pkgs = slices.Compact(pkgs)
	}
	include := append(pkgs, dockerPkg+"="+pick.Version)
	remove := slices.Sorted(slices.Values(changes.Remove))
	lines := sourceLines(m, distro.Suite)
	if dockerSuite != distro.Suite {
		for _, l := range sourceLines(m, dockerSuite) {
			if !slices.Contains(lines, l) {
				lines = append(lines, l)
			}
		}
	}
	// An exact Debian version (a bisection step) and the upstream version
	// that picks the same build are one rootfs.
	dockerVersion := UpstreamVersion(pick.Version)
	keyParts := []string{rootfsFormat, distro.Suite, dockerSuite, strings.Join(include, ","), dockerVersion,
		strings.Join(lines, "\n"), strings.Join(rootfsExcludes, ",")}
	if len(remove) > 0 { // the standard rootfs keeps its key
		keyParts = append(keyParts, "remove="+strings.Join(remove, ","))
	}
	key := keyOf(keyParts...)
	inputs := map[string]string{"suite": distro.Suite, "docker_suite": dockerSuite, "docker": dockerVersion,
		"include": strings.Join(include, ","), "debian": m.Debian, "security": m.Security}
	if len(remove) > 0 {
		inputs["remove"] = strings.Join(remove, ",")
	}
	label := fmt.Sprintf("rootfs %s/docker %s%s: ", distro.Name, docker.Version, changesLabel(changes))
	b := rootfsBuild{suite: distro.Suite, include: include, add: changes.Add, remove: remove, lines: lines,
		dockerPkg: dockerPkg, dockerVersion: docker.Version}
	dir, man, err := c.entry(ctx, "rootfs", key, inputs, func(ctx context.Context, tmp string, man *manifest) error {
		r, err := c.buildRootfs(ctx, tmp, b, progress, label)
		if err != nil {
			return err
		}
		man.Rootfs = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	if man.Rootfs == nil {
		return nil, &CorruptError{dir, "manifest has no rootfs"}
	}
	r := *man.Rootfs
	r.Image = filepath.Join(dir, r.Image)
	if r.Packages != "" {
		r.Packages = filepath.Join(dir, r.Packages)
	}
	return &r, nil
}

// rootfsBuild is what one mmdebstrap run builds.
type rootfsBuild struct {
	suite         string
	include       []string // packages mmdebstrap installs (the Docker package pinned)
	add           []string // the cell's added packages (also in include)
	remove        []string // the cell's removed packages, sorted
	lines         []string // apt sources
	dockerPkg     string
	dockerVersion string
}

// statusBefore is where the dpkg status of the tree is copied before the
// removals, so what apt removed can be told afterwards.
const statusBefore = "dpkg-status.before-remove"

// removeHooks are mmdebstrap customize hooks (run on the host with the
// tree as $1, after every package is installed) that keep the dpkg status
// and then remove the packages the way a user does on a real host.
func removeHooks(tmp string, remove []string) []string {
	if len(remove) == 0 {
		return nil
	}
	return []string{
		`--customize-hook=cp "$1/var/lib/dpkg/status" ` + shellQuote(filepath.Join(tmp, statusBefore)),
		`--customize-hook=chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -- ` + strings.Join(remove, " "),
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (c *Cache) buildRootfs(ctx context.Context, tmp string, b rootfsBuild, progress io.Writer, label string) (*Rootfs, error) {
	start := time.Now()
	tree := filepath.Join(tmp, "tree")
	argv := []string{}
	if os.Geteuid() == 0 {
		// mmdebstrap mounts /proc, /sys and /dev into the target; a private
		// mount namespace makes those mounts die with it, even when killed.
		argv = append(argv, "unshare", "--mount", "--propagation", "private", "--")
	}
	argv = append(argv, "mmdebstrap", "--variant=minbase", "--mode=auto", "--format=directory",
		"--include="+strings.Join(b.include, ","),
		`--aptopt=Acquire::Languages "none"`,
		// No fsync per unpacked file: the tree is thrown away after mkfs and
		// the entry only counts once its manifest is synced.
		"--dpkgopt=force-unsafe-io")
	for _, e := range rootfsExcludes {
		argv = append(argv, "--dpkgopt="+e)
	}
	argv = append(argv, removeHooks(tmp, b.remove)...)
	argv = append(argv, b.suite, tree)
	argv = append(argv, b.lines...)
	fmt.Fprintf(progress, "%smmdebstrap %s (%d packages, %d removed after)\n", label, b.suite, len(b.include), len(b.remove))
	if _, err := runShowing(ctx, proc.Cmd{Argv: argv, Dir: tmp}, progress, label+"mmdebstrap: "); err != nil {
		m, _ := c.Mirrors()
		return nil, classifyBuildError(m, b.suite, err)
	}
	fmt.Fprintf(progress, "%smmdebstrap done in %s\n", label, time.Since(start).Round(time.Second))

	status, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return nil, err
	}
	installed, err := installedPackages(status)
	if err != nil {
		return nil, err
	}
	r := &Rootfs{Image: "rootfs.ext4", Suite: b.suite, Packages: "packages.txt"}
	if len(b.remove) > 0 {
		before, err := os.ReadFile(filepath.Join(tmp, statusBefore))
		if err != nil {
			return nil, err
		}
		was, err := installedPackages(before)
		if err != nil {
			return nil, err
		}
		r.PackagesRemoved = removedPackages(was, installed)
		fmt.Fprintf(progress, "%sapt removed %d packages: %s\n", label, len(r.PackagesRemoved), strings.Join(r.PackagesRemoved, ", "))
	}
	for _, a := range b.add {
		if v, ok := installed[a]; ok {
			r.PackagesAdded = append(r.PackagesAdded, a+" "+v)
		}
	}
	sort.Strings(r.PackagesAdded)
	got, err := checkDocker(installed, r.PackagesRemoved, b.dockerPkg, b.dockerVersion)
	if err != nil {
		return nil, err
	}
	r.DockerPackageVersion = got
	// Leftovers mmdebstrap keeps that no cell needs.
	for _, g := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "var/log/*.log"} {
		matches, _ := filepath.Glob(filepath.Join(tree, g))
		for _, p := range matches {
			_ = os.Remove(p)
		}
	}
	names := make([]string, 0, len(installed))
	for n, v := range installed {
		names = append(names, n+" "+v)
	}
	sort.Strings(names)
	if err := os.WriteFile(filepath.Join(tmp, "packages.txt"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	t := time.Now()
	fmt.Fprintf(progress, "%smaking ext4 image\n", label)
	if err := makeExt4(ctx, tree, filepath.Join(tmp, "rootfs.ext4"),
		ext4Spec{label: "rootfs", headroom: 0.25, extraMiB: 256, extraInos: 65536, journal: true}); err != nil {
		return nil, err
	}
	if err := removeTree(tree); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(tmp, statusBefore))
	st, err := os.Stat(filepath.Join(tmp, "rootfs.ext4"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%simage %d MiB in %s (total %s)\n", label, st.Size()>>20,
		time.Since(t).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
	c.stats.rootfsBuilds.Add(1)
	return r, nil
}

// removedPackages lists, sorted as "name version", what was installed
// before and is not after.
func removedPackages(before, after map[string]string) []string {
	var out []string
	for n, v := range before {
		if _, ok := after[n]; !ok {
			out = append(out, n+" "+v)
		}
	}
	sort.Strings(out)
	return out
}

// installedPackages reads a dpkg status file: package → version of what is installed.
func installedPackages(status []byte) (map[string]string, error) {
	paras, err := parseParagraphs("var/lib/dpkg/status", status)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range paras {
		if strings.HasSuffix(p.fields["status"], " installed") {
			out[p.fields["package"]] = p.fields["version"]
		}
	}
	return out, nil
}

// missingPackage is apt's message for a package the suite does not have.
var missingPackage = regexp.MustCompile(`Unable to locate package (\S+)|Version '([^']+)' for '([^']+)' was not found`)

// classifyBuildError turns mmdebstrap's failure into a *PackageError or
// *MirrorError when its output says so.
func classifyBuildError(m Mirrors, suite string, err error) error {
	var ee *proc.Error
	if errors.As(err, &ee) && ee.ExitCode >= 0 {
		if sm := missingPackage.FindStringSubmatch(ee.Output); sm != nil {
			if sm[1] != "" {
				return fmt.Errorf("%w: %w", &PackageError{Suite: suite, Package: sm[1]}, err)
			}
			return fmt.Errorf("%w: %w", &PackageError{Suite: suite, Package: sm[3], Want: sm[2]}, err)
		}
	}
	return classifyAptError(m, suite, err)
}

// checkDocker says which version of dockerPkg a built rootfs has and fails
// unless it is the one asked for: want is an upstream version (20.10.24)
// or an exact Debian one (20.10.5+dfsg1-1+deb11u2, a bisection step). A
// rootfs whose packages change removed Docker has none ("").
func checkDocker(installed map[string]string, removed []string, dockerPkg, want string) (string, error) {
	got, ok := installed[dockerPkg]
	switch {
	case !ok && slices.ContainsFunc(removed, func(p string) bool { return strings.HasPrefix(p, dockerPkg+" ") }):
		return "", nil
	case !ok:
		return "", fmt.Errorf("%s is not installed in the built rootfs", dockerPkg)
	case UpstreamVersion(got) != want && got != want:
		return "", fmt.Errorf("installed %s is %s, want docker %s", dockerPkg, got, want)
	}
	return got, nil
}
