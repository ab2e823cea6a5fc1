package matrix

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/matrixctl/matrixctl/internal/drivers"
)

// combo is one combination of axis values before it becomes a Cell.
type combo struct {
	kernel   KernelRef
	distro   DistroRef
	docker   DockerValue
	driver   string
	settings Settings
	source   string // "axes" or the include entry that added it
}

// Plan expands the spec into cells, classified by the built-in rules and the
// spec's own rules. Cells come in axis order (kernel, distro, docker,
// driver, as written in the spec), then the cells added by include entries.
// Plan is pure: the same spec gives the same plan on every host.
func (s *Spec) Plan() ([]Cell, error) {
	combos, errs := s.combos()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	rules, err := compileRules(append(BuiltinRules(), s.Rules...))
	if err != nil {
		return nil, err
	}
	cells := make([]Cell, 0, len(combos))
	for _, c := range combos {
		cell := Cell{
			Kernel:   c.kernel,
			Distro:   c.distro,
			Driver:   c.driver,
			Status:   StatusRunnable,
			Settings: c.settings,
		}
		resolveDocker(&cell, c.docker)
		if cell.Status == StatusRunnable {
			classify(&cell, rules)
		}
		cells = append(cells, cell)
	}
	assignIDs(cells)
	return cells, nil
}

// Expand is Plan as a function: matrix.Expand(spec).
func Expand(s *Spec) ([]Cell, error) { return s.Plan() }

// resolveDocker fills the cell's DockerRef from the docker axis value: the
// version must have a docker.io package for the cell's distro.
func resolveDocker(c *Cell, v DockerValue) {
	const source = "[Debian archive: docker.io per suite, DESIGN.md]"
	d := &c.Docker
	d.Package = v.Package
	if d.Package == "" {
		d.Package = "docker.io"
	}
	switch {
	case v.Version == DockerFromDistro:
		d.Version, d.Suite = c.Distro.DockerIO, c.Distro.Suite
		if d.Version == "" {
			c.unsupported(fmt.Sprintf("no docker.io version is known for distro %s (suite %s); give the distro a docker version or pin one on the docker axis %s",
				c.Distro.Name, c.Distro.Suite, source))
		}
	case v.Suite != "":
		d.Version, d.Suite = v.Version, v.Suite
		if baseSuite(v.Suite) != baseSuite(c.Distro.Suite) {
			c.unsupported(fmt.Sprintf("docker %s pinned to suite %s has no package for %s (%s): Debian packages are built for their own suite %s",
				v.Version, v.Suite, c.Distro.Name, c.Distro.Suite, source))
		}
	default:
		d.Version, d.Suite = v.Version, c.Distro.Suite
		if v.Version != c.Distro.DockerIO {
			ships := "no known docker.io"
			if c.Distro.DockerIO != "" {
				ships = "docker.io " + c.Distro.DockerIO
			}
			c.unsupported(fmt.Sprintf("docker %s has no %s package for %s (%s ships %s) %s",
				v.Version, d.Package, c.Distro.Name, c.Distro.Suite, ships, source))
		}
	}
}

// combos expands the axes, applies exclude, then include (GitHub Actions
// strategy.matrix semantics: exclude entries match partially; an include
// entry adds its settings to every original combination it matches without
// overwriting axis values, and becomes a new combination when it matches
// none; include entries never match combinations added by other includes).
func (s *Spec) combos() ([]combo, []error) {
	a := s.Axes
	var errs []error
	n := 1
	for _, l := range []int{len(a.Kernel), len(a.Distro), len(a.Docker), len(a.Driver)} {
		n *= l
		if n > MaxCells {
			return nil, []error{s.errAt("axes", "the axes expand to more than %d cells", MaxCells)}
		}
	}
	var out []combo
	for _, k := range a.Kernel {
		for _, d := range a.Distro {
			for _, dk := range a.Docker {
				for _, dr := range a.Driver {
					c := combo{kernel: k, distro: d, docker: dk, driver: dr, settings: s.Defaults, source: "axes"}
					if !s.excluded(c) {
						out = append(out, c)
					}
				}
			}
		}
	}
	original := len(out)
	for _, e := range s.Include {
		matched := false
		for i := range out[:original] {
			if e.matches(out[i]) {
				e.Set.Apply(&out[i].settings)
				matched = true
			}
		}
		if matched {
			continue
		}
		c, err := s.newCombo(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
		if len(out) > MaxCells {
			return nil, []error{s.errAt(e.key, "the matrix expands to more than %d cells", MaxCells)}
		}
	}
	return out, errs
}

func (s *Spec) excluded(c combo) bool {
	for _, e := range s.Exclude {
		if e.matches(c) {
			return true
		}
	}
	return false
}

// matches reports whether every axis value the entry names equals the
// combination's: kernel by version as written, distro by name or suite,
// docker by the value as written or the version it resolves to.
func (e Entry) matches(c combo) bool {
	if e.Kernel != "" && e.Kernel != c.kernel.Version {
		return false
	}
	if e.Distro != "" && e.Distro != c.distro.Name && e.Distro != c.distro.Suite {
		return false
	}
	if e.Docker != "" && e.Docker != c.docker.Version && (c.docker.Version != DockerFromDistro || e.Docker != c.distro.DockerIO) {
		return false
	}
	if e.Driver != "" && e.Driver != c.driver {
		return false
	}
	return true
}

// newCombo builds the combination an include entry adds.
func (s *Spec) newCombo(e Entry) (combo, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{{AxisKernel, e.Kernel}, {AxisDistro, e.Distro}, {AxisDocker, e.Docker}, {AxisDriver, e.Driver}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return combo{}, s.errAt(e.key, "include entry matches no cell, and as a new cell it lacks %s (a new cell needs kernel, distro, docker and driver)", strings.Join(missing, ", "))
	}
	c := combo{driver: e.Driver, docker: DockerValue{Version: e.Docker}, settings: s.Defaults, source: e.key}
	var kernels []KernelRef
	for _, k := range s.Axes.Kernel {
		if k.Version == e.Kernel {
			kernels = append(kernels, k)
		}
	}
	switch len(kernels) {
	case 0:
		return combo{}, s.errAt(e.key+".kernel", "kernel %s is not defined in axes.kernel (defined: %s)", e.Kernel, strings.Join(s.kernelVersions(), ", "))
	case 1:
		c.kernel = kernels[0]
	default:
		return combo{}, s.errAt(e.key+".kernel", "kernel %s is defined %d times in axes.kernel; a new cell cannot choose", e.Kernel, len(kernels))
	}
	found := false
	for _, d := range s.Axes.Distro {
		if d.Name == e.Distro || d.Suite == e.Distro {
			c.distro, found = d, true
			break
		}
	}
	if !found {
		r, ok := releaseByName(e.Distro)
		if !ok {
			r, ok = releaseBySuite(e.Distro)
		}
		if !ok {
			return combo{}, s.errAt(e.key+".distro", "distro %s is neither in axes.distro nor built in (%s)", e.Distro, knownDistros())
		}
		c.distro = DistroRef{Name: r.Name, Suite: r.Suite, DockerIO: r.Docker}
	}
	e.Set.Apply(&c.settings)
	return c, nil
}

func (s *Spec) kernelVersions() []string {
	var out []string
	for _, k := range s.Axes.Kernel {
		if !slices.Contains(out, k.Version) {
			out = append(out, k.Version)
		}
	}
	return out
}

// validate returns every semantic problem; keys in bad already have a
// decode error, so problems about them (or derived from them) are dropped.
func (s *Spec) validate(bad map[string]bool) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		if !related(bad, key) {
			errs = append(errs, s.errAt(key, format, args...))
		}
	}
	if s.APIVersion != APIVersion {
		if s.APIVersion == "" {
			add("apiVersion", "missing apiVersion: want %s", APIVersion)
		} else {
			add("apiVersion", "unsupported apiVersion %q: want %s", s.APIVersion, APIVersion)
		}
	}
	if s.Kind != Kind {
		if s.Kind == "" {
			add("kind", "missing kind: want %s", Kind)
		} else {
			add("kind", "unsupported kind %q: want %s", s.Kind, Kind)
		}
	}

	// Duplicate axis values.
	seen := map[string]int{}
	dup := func(axis string, i int, id, shown string) {
		k := axis + "\x00" + id
		if j, ok := seen[k]; ok {
			add(indexKey("axes."+axis, i), "duplicate %s %s (same as axes.%s[%d])", axis, shown, axis, j)
			return
		}
		seen[k] = i
	}
	for i, k := range s.Axes.Kernel {
		dup(AxisKernel, i, fmt.Sprint(k), k.Version)
	}
	for i, d := range s.Axes.Distro {
		dup(AxisDistro, i, d.Name, d.Name)
	}
	for i, d := range s.Axes.Docker {
		dup(AxisDocker, i, fmt.Sprint(d), d.Version)
	}
	for i, d := range s.Axes.Driver {
		dup(AxisDriver, i, d, d)
	}

	// Empty matrix.
	var empty []string
	for _, ax := range []struct {
		name string
		n    int
	}{{AxisKernel, len(s.Axes.Kernel)}, {AxisDistro, len(s.Axes.Distro)}, {AxisDocker, len(s.Axes.Docker)}, {AxisDriver, len(s.Axes.Driver)}} {
		if ax.n == 0 {
			empty = append(empty, ax.name)
		}
	}
	if len(empty) > 0 && len(s.Include) == 0 {
		add("axes", "empty matrix: axes %s %s no values and no include entry adds a cell", strings.Join(empty, ", "), plural(len(empty), "has", "have"))
	}

	// Exclude values must exist (a typo would silently exclude nothing).
	for _, e := range s.Exclude {
		errs = append(errs, s.checkExists(e, bad)...)
	}
	for _, e := range s.Include {
		if e.Kernel != "" && !slices.Contains(s.kernelVersions(), e.Kernel) {
			add(e.key+".kernel", "kernel %s is not defined in axes.kernel (defined: %s)", e.Kernel, strings.Join(s.kernelVersions(), ", "))
		}
	}

	// Settings that contradict each other.
	if s.Defaults.Timeout <= s.Defaults.Soak {
		add("timeout", "timeout %s must be longer than soak %s", s.Defaults.Timeout, s.Defaults.Soak)
	}
	for _, e := range s.Include {
		st := s.Defaults
		e.Set.Apply(&st)
		if (e.Set.Timeout != nil || e.Set.Soak != nil) && st.Timeout <= st.Soak {
			add(e.key, "timeout %s must be longer than soak %s", st.Timeout, st.Soak)
		}
	}
	for i, r := range s.Rules {
		if _, err := compileRules([]Rule{r}); err != nil {
			add(indexKey("rules", i), "%v", err)
		}
	}
	if len(bad) > 0 {
		return errs
	}
	combos, cerrs := s.combos()
	for _, err := range cerrs {
		if !slices.ContainsFunc(errs, func(e error) bool { return e.Error() == err.Error() }) {
			errs = append(errs, err)
		}
	}
	if len(cerrs) == 0 && len(combos) == 0 && len(empty) == 0 {
		errs = append(errs, s.errAt("exclude", "empty matrix: every combination is excluded"))
	}
	return errs
}

// checkExists reports exclude values that name no value of their axis.
func (s *Spec) checkExists(e Entry, bad map[string]bool) []error {
	var errs []error
	check := func(axis, v string, values []string) {
		key := e.key + "." + axis
		if v == "" || slices.Contains(values, v) || related(bad, key) {
			return
		}
		errs = append(errs, s.errAt(key, "%s %s is not in axes.%s (values: %s)", axis, v, axis, strings.Join(values, ", ")))
	}
	check(AxisKernel, e.Kernel, s.kernelVersions())
	var distros, dockers, drivers []string
	for _, d := range s.Axes.Distro {
		distros = append(distros, d.Name, d.Suite)
	}
	for _, d := range s.Axes.Docker {
		dockers = append(dockers, d.Version)
		if d.Version == DockerFromDistro {
			for _, ds := range s.Axes.Distro {
				if ds.DockerIO != "" {
					dockers = append(dockers, ds.DockerIO)
				}
			}
		}
	}
	drivers = append(drivers, s.Axes.Driver...)
	check(AxisDistro, e.Distro, distros)
	check(AxisDocker, e.Docker, dockers)
	check(AxisDriver, e.Driver, drivers)
	return errs
}

// related reports whether key, one of its ancestors or one of its
// descendants is in bad.
func related(bad map[string]bool, key string) bool {
	for b := range bad {
		if b == key || strings.HasPrefix(b, key+".") || strings.HasPrefix(b, key+"[") ||
			strings.HasPrefix(key, b+".") || strings.HasPrefix(key, b+"[") || b == "" {
			return true
		}
	}
	return false
}

// badPaths collects the keys of decode errors.
func badPaths(errs []error) map[string]bool {
	bad := map[string]bool{}
	for _, err := range errs {
		var se *SpecError
		if errors.As(err, &se) {
			bad[se.Key] = true
		}
	}
	return bad
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// CellID is the readable ID of a cell: k<kernel>-<distro>-docker<version>-<driver>,
// e.g. "k6.1-debian12-docker20.10.24-overlay2", plus a suffix for every
// setting that makes a different host, when it is not the default (so the
// IDs of default cells stay as they were, and a different host is never
// the same cell in the report or the history): see hostSuffix. Characters
// that are unsafe in a directory name become "_". Plan adds "-2", "-3", ...
// to IDs that would otherwise collide.
func CellID(c Cell) string {
	dv := c.Docker.Version
	if dv == "" {
		dv = "unknown"
	}
	id := fmt.Sprintf("k%s-%s-docker%s-%s", c.Kernel.Version, c.Distro.Name, dv, c.Driver) + hostSuffix(c)
	id = unsafeIDChars.ReplaceAllString(id, "_")
	return strings.Trim(id, ".")
}

// hostSuffix is the part of a cell ID that names the settings in which the
// cell's host differs from the default one, in this order:
//
//	-init-<init>           init is not DefaultInit
//	-cgroup<layout>        cgroup is v1 or v2
//	-scratch-<fs>          scratch_fs is not the driver's default backing filesystem
//	-crashcheck            crash_check: the power is cut during writes
//	-fault-<name>          each injected fault, sorted; a probabilistic one
//	                       with its probability in percent: -fault-sysrq-panic-p30
//	-add-<pkg>, -remove-<pkg>   each package change, sorted
//
// Settings that only change how long or how hard a cell is exercised
// (probes, soak, repeats, timeout, vm size) are not part of it.
func hostSuffix(c Cell) string {
	s := c.Settings
	var b strings.Builder
	if s.Init != "" && s.Init != DefaultInit {
		b.WriteString("-init-" + s.Init)
	}
	if s.Cgroup != "" && s.Cgroup != CgroupDistro {
		b.WriteString("-cgroup" + s.Cgroup)
	}
	if s.ScratchFS != "" && s.ScratchFS != drivers.DefaultScratchFS(c.Driver) {
		b.WriteString("-scratch-" + s.ScratchFS)
	}
	if s.CrashCheck {
		b.WriteString("-crashcheck")
	}
	faults := make([]string, 0, len(s.Faults))
	for _, f := range s.Faults {
		faults = append(faults, f+FaultProbabilitySuffix(s.FaultProbability[f]))
	}
	for _, part := range []struct {
		prefix string
		names  []string
	}{{"-fault-", faults}, {"-add-", s.Packages.Add}, {"-remove-", s.Packages.Remove}} {
		names := slices.Clone(part.names)
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			b.WriteString(part.prefix + n)
		}
	}
	return b.String()
}

// FaultProbabilitySuffix is the cell ID suffix of a fault's probability:
// "-p30" for 0.3, "-p2.5" for 0.025, "" for an always-injected fault (0).
func FaultProbabilitySuffix(p float64) string {
	if p <= 0 {
		return ""
	}
	return "-p" + strconv.FormatFloat(math.Round(p*1e4)/1e2, 'f', -1, 64)
}

// assignIDs gives every cell a unique ID.
func assignIDs(cells []Cell) {
	used := map[string]bool{}
	base := make([]string, len(cells))
	for i := range cells {
		base[i] = CellID(cells[i])
	}
	// Base IDs first, so a suffix never takes another cell's base ID.
	for i := range cells {
		if !used[base[i]] {
			cells[i].ID = base[i]
			used[base[i]] = true
		}
	}
	for i := range cells {
		if cells[i].ID != "" {
			continue
		}
		for n := 2; ; n++ {
			id := fmt.Sprintf("%s-%d", base[i], n)
			if !used[id] {
				cells[i].ID = id
				used[id] = true
				break
			}
		}
	}
}
