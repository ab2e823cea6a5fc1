// Package vagrant is the runner's Vagrant provider: each run of a cell gets
// its own directory with a Vagrantfile rendered from vagrant/ (box, CPUs,
// memory, a raw scratch disk, the serial console to a file), `vagrant up`
// boots it through vagrant-libvirt, the shell provisioner puts Docker's data
// directory on the scratch disk with the cell's storage driver, and the
// Docker API reaches the host only through an SSH-forwarded port bound to
// 127.0.0.1. The serial file is tailed into the runner's console analysis
// while the domain runs; a domain that stops by itself (a panic reboots
// with panic=-1, and -no-reboot turns the reboot into a stop) is a crash.
//
// Every run's domain is destroyed (`vagrant destroy -f`, then virsh by
// name when vagrant could not) on every exit path; DestroyLeftovers does it
// for runs a dead controller left behind (matrixctl run --resume).
package vagrant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/internal/drivers"
	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/runner"
	"github.com/matrixctl/matrixctl/vagrant"
)

// Name is the provider's name in results.json and on the command line.
const Name = "vagrant"

// Provider boots cells as Vagrant + libvirt domains.
type Provider struct {
	Cache *images.Cache
	// Catalog maps cells to boxes (nil: vagrant.DefaultCatalog).
	Catalog *vagrant.Catalog
	// URI is libvirt's connection (empty: qemu:///system).
	URI string
	// LibvirtDriver is "qemu" (TCG, works everywhere) or "kvm" (empty: qemu).
	LibvirtDriver string
	// Env is added to every vagrant command's environment (e.g. VAGRANT_HOME=...).
	Env []string
	// ScratchMiB is the scratch disk's size (0: 4096).
	ScratchMiB int
	// Network is the existing libvirt network the domains' management
	// interface joins (empty: "default", the NAT network libvirt's packages
	// define). The provider never creates or removes a network.
	Network string
	// BootDir is where a project-built box's kernel and initrd are copied
	// for each run, so that QEMU, which libvirt runs as its own user, can
	// read them wherever the cache is (a mktemp -d cache is mode 0700).
	// Empty: /var/lib/libvirt/boot for qemu:///system, none otherwise.
	BootDir string
	// BootTimeout bounds `vagrant up`; DockerTimeout provisioning and the first ping (0: 10 min each).
	BootTimeout, DockerTimeout time.Duration

	mu       sync.Mutex
	prepared map[string]prepared // by run dir
}

type prepared struct {
	entry *vagrant.Entry
	box   *vagrant.Box // nil for a downloaded box
	// netName and netCIDR are the management network and its address.
	netName, netCIDR string
}

var _ runner.Provider = (*Provider)(nil)

// Name implements runner.Provider.
func (p *Provider) Name() string { return Name }

// provisions reports whether provisioning (vagrant/provision.sh) can set up
// driver: it makes a filesystem on the scratch disk (not a raw disk for a
// thin pool or zpool) and installs no packages besides docker.io.
func provisions(driver string) bool {
	d, ok := drivers.Lookup(driver)
	return ok && d.ScratchDefault != drivers.Raw && len(d.Packages) == 0
}

// MissingToolError says vagrant, its libvirt plugin or libvirt is not usable here.
type MissingToolError struct {
	Tool string
	Hint string
	Err  error
}

func (e *MissingToolError) Error() string {
	return fmt.Sprintf("%s is not usable: %v (%s)", e.Tool, e.Err, e.Hint)
}
func (e *MissingToolError) Unwrap() error { return e.Err }

func (p *Provider) uri() string {
	if p.URI == "" {
		return "qemu:///system"
	}
	return p.URI
}

// CheckTools verifies vagrant, the vagrant-libvirt plugin and a reachable
// libvirtd; the error names what is missing and how to get it.
func (p *Provider) CheckTools(ctx context.Context) error {
	if _, err := proc.LookPath("vagrant"); err != nil {
		return &MissingToolError{Tool: "vagrant", Hint: "install the vagrant package (hack/install-deps.sh)", Err: err}
	}
	if _, err := proc.LookPath("virsh"); err != nil {
		return &MissingToolError{Tool: "virsh", Hint: "install libvirt-clients and libvirt-daemon-system", Err: err}
	}
	out, err := proc.Output(ctx, proc.Cmd{Argv: []string{"vagrant", "plugin", "list"}, Env: p.Env})
	if err != nil {
		return &MissingToolError{Tool: "vagrant", Hint: "`vagrant plugin list` failed", Err: err}
	}
	if !strings.Contains(out, "vagrant-libvirt") {
		return &MissingToolError{Tool: "vagrant-libvirt", Hint: "install the vagrant-libvirt package or `vagrant plugin install vagrant-libvirt`",
			Err: fmt.Errorf("plugin not listed by `vagrant plugin list`: %s", strings.TrimSpace(out))}
	}
	if _, err := p.virsh(ctx, "version"); err != nil {
		return &MissingToolError{Tool: "libvirtd", Hint: "start it (`virtlogd -d; libvirtd -d` where there is no systemd)", Err: err}
	}
	return nil
}

// Prepare implements runner.Provider: it checks the tools, finds the cell's
// box in the catalog and, for a project-built one, builds and registers it.
func (p *Provider) Prepare(ctx context.Context, req runner.Request) error {
	if err := p.CheckTools(ctx); err != nil {
		return runner.Infra("vagrant tools", err)
	}
	if !provisions(req.Cell.Driver) {
		return &runner.UnsupportedError{Reason: fmt.Sprintf("the vagrant provider does not set up storage driver %s", req.Cell.Driver)}
	}
	cat := p.Catalog
	if cat == nil {
		c, err := vagrant.ParseCatalog("vagrant/boxes.yaml", vagrant.DefaultCatalog)
		if err != nil {
			return runner.Infra("box catalog", err)
		}
		cat = c
	}
	e, err := cat.Lookup(req.Cell)
	if err != nil {
		return &runner.UnsupportedError{Reason: err.Error()}
	}
	pr := prepared{entry: e, netName: p.network()}
	if pr.netCIDR, err = p.networkCIDR(ctx, pr.netName); err != nil {
		return runner.Infra("libvirt network", err)
	}
	if e.Build != nil {
		logf, err := os.Create(filepath.Join(req.Dir, "prepare.log"))
		if err != nil {
			return runner.Infra("prepare log", err)
		}
		defer logf.Close()
		kernel := matrix.KernelRef{Version: e.Kernel, Suite: e.Build.KernelSuite}
		if req.Cell.Kernel.Box == "" && req.Cell.Kernel.Suite != "" {
			kernel = req.Cell.Kernel
		}
		if len(req.Cell.Pending) > 0 {
			// The box's kernel is ours: decide the cell's kernel checks
			// before building a box it could not use.
			k, err := p.Cache.Kernel(ctx, kernel)
			if err != nil {
				return runner.Infra("kernel", err)
			}
			config, err := k.ConfigMap()
			if err != nil {
				return runner.Infra("kernel config", err)
			}
			if ok, reason := matrix.EvalKernelChecks(req.Cell.Pending, config, k.HasModule); !ok {
				return &runner.UnsupportedError{Reason: fmt.Sprintf("kernel %s: %s", k.Release, reason)}
			}
		}
		distro := req.Cell.Distro
		distro.Suite = e.Build.Suite
		box, err := vagrant.BuildBox(ctx, p.Cache, vagrant.BoxSpec{Distro: distro, Kernel: kernel, Docker: req.Cell.Docker}, logf)
		if err != nil {
			var pe *images.PackageError
			if errors.As(err, &pe) {
				return &runner.UnsupportedError{Reason: err.Error()}
			}
			return runner.Infra("build box", err)
		}
		if err := p.addBox(ctx, box); err != nil {
			return runner.Infra("vagrant box add", err)
		}
		pr.box = box
	}
	p.mu.Lock()
	if p.prepared == nil {
		p.prepared = map[string]prepared{}
	}
	p.prepared[req.Dir] = pr
	p.mu.Unlock()
	return nil
}

// addBox registers a built box with vagrant unless it already is.
func (p *Provider) addBox(ctx context.Context, box *vagrant.Box) error {
	out, err := proc.Output(ctx, proc.Cmd{Argv: []string{"vagrant", "box", "list", "--machine-readable"}, Env: p.Env})
	if err != nil {
		return err
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, ","); len(f) >= 4 && f[2] == "box-name" && f[3] == box.Name {
			return nil
		}
	}
	_, err = proc.Run(ctx, proc.Cmd{Argv: []string{"vagrant", "box", "add", "--force", "--name", box.Name, box.File}, Env: p.Env})
	return err
}

// RemoveBox unregisters a built box and deletes the base volume
// vagrant-libvirt uploaded for it into libvirt's default pool.
func (p *Provider) RemoveBox(ctx context.Context, name string) error {
	var errs []error
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"vagrant", "box", "remove", "--force", "--all", name}, Env: p.Env}); err != nil {
		errs = append(errs, err)
	}
	out, err := p.virsh(ctx, "vol-list", "--pool", "default")
	if err == nil {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 1 && strings.HasPrefix(f[0], name+"_vagrant_box_image") {
				if _, err := p.virsh(ctx, "vol-delete", "--pool", "default", f[0]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) network() string { return orDefault(p.Network, "default") }

// networkCIDR returns the IPv4 address (CIDR) of libvirt network name.
func (p *Provider) networkCIDR(ctx context.Context, name string) (string, error) {
	out, err := p.virsh(ctx, "net-dumpxml", name)
	if err != nil {
		return "", &MissingToolError{Tool: "libvirt network " + name,
			Hint: "define it (`virsh net-define /usr/share/libvirt/networks/default.xml`) or name another one", Err: err}
	}
	cidr, err := parseNetworkCIDR(out)
	if err != nil {
		return "", fmt.Errorf("libvirt network %s: %w", name, err)
	}
	return cidr, nil
}

// parseNetworkCIDR reads the first IPv4 <ip> of a libvirt network's XML
// and returns its network address in CIDR form (192.168.122.0/24).
func parseNetworkCIDR(doc string) (string, error) {
	var n struct {
		IPs []struct {
			Family  string `xml:"family,attr"`
			Address string `xml:"address,attr"`
			Netmask string `xml:"netmask,attr"`
			Prefix  string `xml:"prefix,attr"`
		} `xml:"ip"`
	}
	if err := xml.Unmarshal([]byte(doc), &n); err != nil {
		return "", fmt.Errorf("network xml: %w", err)
	}
	for _, ip := range n.IPs {
		if ip.Family != "" && ip.Family != "ipv4" {
			continue
		}
		addr := net.ParseIP(ip.Address).To4()
		if addr == nil {
			return "", fmt.Errorf("network xml: ip address %q is not IPv4", ip.Address)
		}
		var mask net.IPMask
		switch {
		case ip.Netmask != "":
			if m := net.ParseIP(ip.Netmask).To4(); m != nil {
				mask = net.IPMask(m)
			}
		case ip.Prefix != "":
			if bits, err := strconv.Atoi(ip.Prefix); err == nil && bits >= 0 && bits <= 32 {
				mask = net.CIDRMask(bits, 32)
			}
		}
		if ones, bits := mask.Size(); bits != 32 || ones == 0 {
			return "", fmt.Errorf("network xml: ip %s has no usable netmask (netmask %q, prefix %q)", ip.Address, ip.Netmask, ip.Prefix)
		}
		return (&net.IPNet{IP: addr.Mask(mask), Mask: mask}).String(), nil
	}
	return "", errors.New("network xml: no IPv4 address (the management network needs DHCP on IPv4)")
}

func (p *Provider) bootDir() string {
	if p.BootDir != "" {
		return p.BootDir
	}
	if p.uri() == "qemu:///system" {
		return "/var/lib/libvirt/boot"
	}
	return ""
}

func (p *Provider) virsh(ctx context.Context, args ...string) (string, error) {
	return proc.Output(ctx, proc.Cmd{Argv: append([]string{"virsh", "-c", p.uri()}, args...)})
}

// state is what a run directory keeps so that a later controller can destroy
// what this one left (vagrant/state.json).
type state struct {
	Domain string `json:"domain"`
	URI    string `json:"uri"`
	Dir    string `json:"dir"`
	// Staged are the kernel and initrd copied into the provider's BootDir.
	Staged []string `json:"staged,omitempty"`
}

const stateFile = "matrixctl-state.json"

// Boot implements runner.Provider: render the Vagrantfile and `vagrant up`.
func (p *Provider) Boot(ctx context.Context, req runner.Request) (runner.Machine, error) {
	p.mu.Lock()
	pr, ok := p.prepared[req.Dir]
	delete(p.prepared, req.Dir)
	p.mu.Unlock()
	if !ok {
		return nil, runner.Infra("boot", errors.New("cell was not prepared"))
	}
	s := req.Cell.Settings
	scratchFS := s.ScratchFS
	if scratchFS == "" {
		scratchFS = drivers.DefaultScratchFS(req.Cell.Driver)
	}
	vdir := filepath.Join(req.Dir, "vagrant")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return nil, runner.Infra("vagrant dir", err)
	}
	sum := sha256.Sum256([]byte(vdir))
	prefix := "matrixctl-" + hex.EncodeToString(sum[:])[:12] + "-"
	console := filepath.Join(req.Dir, "serial.log")
	cpus, mem := s.CPUs, s.MemoryMB
	if cpus <= 0 {
		cpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	scratch := p.ScratchMiB
	if scratch <= 0 {
		scratch = 4096
	}
	params := vagrant.Params{Cell: req.Cell.ID, Repeat: req.Repeat, Box: pr.entry.Name, BoxVersion: pr.entry.Version,
		URI: p.uri(), LibvirtDriver: orDefault(p.LibvirtDriver, "qemu"), Prefix: prefix, CPUs: cpus, MemoryMB: mem,
		ScratchMiB: scratch, ConsoleFile: console, DockerVersion: req.Cell.Docker.Version,
		DockerPackage: orDefault(req.Cell.Docker.Package, "docker.io"), Driver: req.Cell.Driver, ScratchFS: scratchFS,
		MkfsArgs: strings.Join(req.Cell.ScratchMkfsArgs, " "), BootTimeoutSeconds: int(p.bootTimeout().Seconds())}
	params.ManagementNetwork, params.ManagementNetworkAddress = pr.netName, pr.netCIDR
	st := state{Domain: prefix + "default", URI: p.uri(), Dir: vdir}
	if pr.box != nil {
		params.Box = pr.box.Name
		params.Kernel, params.Initrd, params.Cmdline = pr.box.Kernel, pr.box.Initrd, pr.box.Cmdline
		if d := p.bootDir(); d != "" {
			params.Kernel, params.Initrd = filepath.Join(d, prefix+"vmlinuz"), filepath.Join(d, prefix+"initrd.img")
			st.Staged = []string{params.Kernel, params.Initrd}
		}
	}
	vf, err := vagrant.Render(params)
	if err != nil {
		return nil, runner.Infra("render Vagrantfile", err)
	}
	// The state file comes first: a controller killed from here on leaves
	// what DestroyLeftovers needs to find the domain and the staged files.
	sb, _ := json.Marshal(st)
	for name, data := range map[string][]byte{stateFile: sb, "Vagrantfile": vf, "provision.sh": vagrant.ProvisionScript} {
		if err := runner.WriteFileAtomic(filepath.Join(vdir, name), data, 0o644); err != nil {
			return nil, runner.Infra("write "+name, err)
		}
	}
	if len(st.Staged) > 0 {
		if err := os.MkdirAll(filepath.Dir(st.Staged[0]), 0o711); err != nil {
			return nil, runner.Infra("stage kernel for libvirt", err)
		}
		for i, src := range []string{pr.box.Kernel, pr.box.Initrd} {
			if err := copyFile(src, st.Staged[i]); err != nil {
				p.removeStaged(st)
				return nil, runner.Infra("stage kernel for libvirt", err)
			}
		}
	}
	m := &machine{p: p, st: st, dir: req.Dir, vdir: vdir, scratchFS: scratchFS, exited: make(chan struct{}),
		tail: startTail(console, req.Console)}
	if err := m.up(ctx); err != nil {
		select {
		case <-m.exited:
			if m.Exit().Reason != runner.ExitInfra {
				// The guest stopped by itself while booting: evidence, not an error.
				return m, nil
			}
			err = runner.Infra("vagrant up", errors.New(m.Exit().Detail))
		default:
			if tail := qemuLogTail(m.st.Domain); tail != "" && ctx.Err() == nil {
				err = fmt.Errorf("%w\nlibvirt's QEMU log ends: %s", err, tail)
			}
		}
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

// copyFile copies src to dst (mode 0644, readable by libvirt's QEMU user).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// removeStaged deletes a run's staged kernel and initrd; only files named
// by this provider in its BootDir are touched (the state file is data).
func (p *Provider) removeStaged(st state) {
	d := p.bootDir()
	for _, f := range st.Staged {
		if d != "" && filepath.Dir(f) == filepath.Clean(d) && strings.HasPrefix(filepath.Base(f), "matrixctl-") {
			_ = os.Remove(f)
		}
	}
}

// qemuLogPath is the log libvirt keeps of a local domain's QEMU (its
// command line and what QEMU said before it died).
func qemuLogPath(domain string) string { return "/var/log/libvirt/qemu/" + domain + ".log" }

// qemuLogTail is the last lines of a domain's QEMU log ("" if there is none).
func qemuLogTail(domain string) string {
	b, err := os.ReadFile(qemuLogPath(domain))
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasSuffix(l, "\\") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (p *Provider) bootTimeout() time.Duration {
	if p.BootTimeout > 0 {
		return p.BootTimeout
	}
	return 10 * time.Minute
}

func (p *Provider) dockerTimeout() time.Duration {
	if p.DockerTimeout > 0 {
		return p.DockerTimeout
	}
	return 10 * time.Minute
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dockerPing pings the daemon at host.
func dockerPing(ctx context.Context, host string) (string, error) {
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return "", err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return "", err
	}
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// DestroyLeftovers destroys the domains of runs under root that a dead
// controller left behind: every vagrant/matrixctl-state.json found gets
// `vagrant destroy -f` and, if its domain still exists, virsh destroy and
// undefine with its storage. It returns the domains it removed.
func (p *Provider) DestroyLeftovers(ctx context.Context, root string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == stateFile {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, f := range found {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st state
		if err := json.Unmarshal(b, &st); err != nil || st.Domain == "" {
			errs = append(errs, fmt.Errorf("%s: not a matrixctl state file", f))
			continue
		}
		st.Dir = filepath.Dir(f)
		if !p.domainExists(ctx, st.Domain) {
			p.removeStaged(st)
			continue
		}
		if err := p.destroy(ctx, st); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, st.Domain)
	}
	return removed, errors.Join(errs...)
}

func (p *Provider) domainExists(ctx context.Context, name string) bool {
	_, err := p.virsh(ctx, "domstate", name)
	return err == nil
}

// destroy removes a run's domain and its volumes: vagrant first, virsh as
// the fallback when vagrant lost track of it (killed mid-`up`).
func (p *Provider) destroy(ctx context.Context, st state) error {
	defer func() {
		p.removeStaged(st)
		if !p.domainExists(ctx, st.Domain) {
			keepQemuLog(st.Domain, filepath.Dir(st.Dir))
		}
	}()
	_, verr := proc.Run(ctx, proc.Cmd{Argv: []string{"vagrant", "destroy", "-f"}, Dir: st.Dir, Env: p.Env})
	if !p.domainExists(ctx, st.Domain) {
		return nil
	}
	_, _ = p.virsh(ctx, "destroy", st.Domain)
	if _, err := p.virsh(ctx, "undefine", st.Domain, "--remove-all-storage", "--nvram"); err != nil {
		if _, err2 := p.virsh(ctx, "undefine", st.Domain, "--remove-all-storage"); err2 != nil {
			return errors.Join(verr, err, err2)
		}
	}
	return nil
}

// qemuPid reads the pid libvirt keeps for a running domain.
func qemuPid(domain string) int {
	b, err := os.ReadFile("/run/libvirt/qemu/" + domain + ".pid")
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
