package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/internal/drivers"
	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

// driverSpec says what a storage driver needs from the kernel and the scratch disk.
type driverSpec struct {
	modules   []string // modprobe'd; a failure means the kernel cannot provide the driver
	fs        string   // must then appear in /proc/filesystems ("" = no check)
	scratchFS string   // default scratch filesystem; "raw" = the driver takes the block device
	allowedFS []string // scratch filesystems the driver works on
	opts      func(scratchDev string) []string
	// daemonOpts are the storage-opts daemon.json gets under init: systemd.
	daemonOpts func() []string
}

// lookupDriver reads a driver's facts from the storage-driver table
// (internal/drivers) and adds the dockerd options the agent sets for it.
func lookupDriver(name string) (driverSpec, bool) {
	d, ok := drivers.Lookup(name)
	if !ok {
		return driverSpec{}, false
	}
	return driverSpec{modules: d.Modules, fs: d.ProcFS, scratchFS: d.ScratchDefault, allowedFS: d.ScratchAllowed,
		opts: driverOpts[name], daemonOpts: driverDaemonOpts[name]}, true
}

// driverOpts are the dockerd options the agent adds per storage driver
// under init: agent.
var driverOpts = map[string]func(scratchDev string) []string{
	"devicemapper": func(string) []string {
		// The agent builds the thin pool itself with dmsetup (thinPool):
		// the guest has no udev, and LVM (the guide's direct-lvm steps, or
		// dm.directlvm_device) waits for udev to create the LV's device
		// node and then fails. Without udev, no udev sync and no deferred
		// removal/deletion.
		return []string{"--storage-opt", "dm.thinpooldev=/dev/mapper/" + thinPoolName,
			"--storage-opt", "dm.override_udev_sync_check=true", "--storage-opt", "dm.use_deferred_removal=false", "--storage-opt", "dm.use_deferred_deletion=false"}
	},
}

// driverDaemonOpts are the storage-opts daemon.json gets under init:
// systemd. devicemapper follows Docker's devicemapper guide (direct-lvm,
// daemon.json): the LVM thin pool the agent made with the guide's steps
// (lvmThinPool) and deferred removal/deletion; udev runs, so no udev-sync
// override.
var driverDaemonOpts = map[string]func() []string{
	"devicemapper": func() []string {
		return []string{"dm.thinpooldev=" + lvmPoolDev, "dm.use_deferred_removal=true", "dm.use_deferred_deletion=true"}
	},
}

// mkfs is how each scratch filesystem is made.
var mkfs = map[string]struct {
	module string
	argv   []string
	opts   string
}{
	"ext4":  {"ext4", []string{"mkfs.ext4", "-F", "-q"}, ""},
	"xfs":   {"xfs", []string{"mkfs.xfs", "-f", "-q", "-n", "ftype=1"}, ""},
	"btrfs": {"btrfs", []string{"mkfs.btrfs", "-f", "-q"}, ""},
}

type preparedDriver struct {
	name       string
	spec       driverSpec
	scratchFS  string
	scratchDev string
}

// prepareDriver loads the driver's modules; a kernel without them is unsupported.
func (a *agent) prepareDriver() (*preparedDriver, error) {
	d, err := chooseDriver(a.cfg)
	if err != nil {
		return nil, err
	}
	name, spec, fs := d.name, d.spec, d.scratchFS
	for _, m := range spec.modules {
		if out, err := a.runCmd(30*time.Second, "modprobe", m); err != nil {
			return nil, unsupportedf("kernel %s cannot provide storage driver %s: modprobe %s failed: %s", a.release, name, m, out)
		}
	}
	if spec.fs != "" && !hasFilesystem(spec.fs) {
		return nil, unsupportedf("kernel %s cannot provide storage driver %s: no %s in /proc/filesystems", a.release, name, spec.fs)
	}
	if mk, ok := mkfs[fs]; ok {
		if out, err := a.runCmd(30*time.Second, "modprobe", mk.module); err != nil && !hasFilesystem(fs) {
			return nil, unsupportedf("kernel %s cannot mount a %s scratch disk: %s", a.release, fs, out)
		}
	}
	a.logf("storage driver %s on %s scratch", name, fs)
	return d, nil
}

// chooseDriver decides, from the boot config alone, the storage driver
// (overlay2 when none is named), its facts and the scratch filesystem (the
// driver's default when none is named); a driver the agent does not know,
// or a scratch filesystem the driver does not run on, is unsupported.
func chooseDriver(cfg agentproto.BootConfig) (*preparedDriver, error) {
	name := cfg.Driver
	if name == "" {
		name = "overlay2"
	}
	spec, ok := lookupDriver(name)
	if !ok {
		return nil, unsupportedf("storage driver %q is not known to the agent", name)
	}
	fs := cfg.ScratchFS
	if fs == "" {
		fs = spec.scratchFS
	}
	if !slices.Contains(spec.allowedFS, fs) {
		return nil, unsupportedf("storage driver %s does not run on a %s scratch disk", name, fs)
	}
	return &preparedDriver{name: name, spec: spec, scratchFS: fs}, nil
}

func hasFilesystem(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	return err == nil && listsFilesystem(b, name)
}

// listsFilesystem reports whether a /proc/filesystems text lists name
// ("nodev\toverlay" or "\text4").
func listsFilesystem(procFilesystems []byte, name string) bool {
	for _, line := range strings.Split(string(procFilesystems), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

const dockerRoot = "/var/lib/docker"

func (a *agent) prepareScratch(d *preparedDriver) error {
	dev, err := findDisk(agentproto.SerialScratch, 10*time.Second)
	if err != nil {
		return err
	}
	d.scratchDev = dev
	if err := os.MkdirAll(dockerRoot, 0o711); err != nil {
		return err
	}
	mk, ok := mkfs[d.scratchFS]
	if !ok {
		if a.cfg.ThinPoolByLVM() {
			return a.lvmThinPool(dev)
		}
		if d.name == "devicemapper" {
			return a.thinPool(dev)
		}
		return nil // raw: the driver takes the device
	}
	if a.cfg.ReuseScratch {
		a.logf("reusing the %s filesystem on scratch disk %s", d.scratchFS, dev)
	} else {
		argv := append(slices.Clone(mk.argv), dev)
		if out, err := a.runCmd(120*time.Second, argv...); err != nil {
			return fmt.Errorf("make %s on scratch disk: %w (%s)", d.scratchFS, err, out)
		}
	}
	if err := unix.Mount(dev, dockerRoot, d.scratchFS, 0, mk.opts); err != nil {
		return fmt.Errorf("mount scratch %s (%s) on %s: %w", dev, d.scratchFS, dockerRoot, err)
	}
	a.scratchMount = dockerRoot
	return nil
}

// containerdSocket is where the agent's own containerd listens.
const containerdSocket = "/run/containerd/containerd.sock"

// startDocker starts containerd, waits until its socket accepts connections,
// then starts dockerd on it and waits until dockerd answers. dockerd 20.10
// gives a containerd it manages itself only ~15 s to come up, which a loaded
// TCG guest misses; the agent's own wait is bounded by DockerdTimeoutS
// instead. A rootfs without a containerd binary falls back to dockerd's own.
func (a *agent) startDocker(d *preparedDriver) (string, error) {
	deadline := time.Now().Add(time.Duration(a.cfg.DockerdTimeoutS) * time.Second)
	argv := []string{"dockerd", "--storage-driver", d.name, "-H", "unix:///var/run/docker.sock"}
	if _, err := exec.LookPath("containerd"); err == nil {
		if err := a.startContainerd(deadline); err != nil {
			return "", err
		}
		argv = append(argv, "--containerd", containerdSocket)
	} else {
		a.logf("no containerd binary in the rootfs: dockerd starts its own")
	}
	if d.spec.opts != nil {
		argv = append(argv, d.spec.opts(d.scratchDev)...)
	}
	if a.cfg.DockerdDebug {
		argv = append(argv, "--debug")
	}
	tail := newTail(20)
	s, err := a.spawnLogged(tail, "", argv...)
	if err != nil {
		return "", err
	}
	a.dockerMu.Lock()
	a.dockerd = s
	a.dockerMu.Unlock()
	a.logf("started %s", strings.Join(argv, " "))
	for {
		if v, err := dockerVersion(); err == nil {
			return v, nil
		}
		select {
		case ws := <-s.Exit:
			time.Sleep(200 * time.Millisecond) // let the log reader catch up
			return "", fmt.Errorf("dockerd exited (%s) before it answered: %s", statusString(ws), tail.String())
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("dockerd did not answer within %ds: %s", a.cfg.DockerdTimeoutS, tail.String())
		}
	}
}

// startContainerd starts containerd with its state where dockerd's managed
// one keeps it (root on the scratch disk) and waits until its socket accepts
// connections. Its output goes to the dockerd log source, prefixed.
func (a *agent) startContainerd(deadline time.Time) error {
	argv := []string{"containerd", "--address", containerdSocket,
		"--root", dockerRoot + "/containerd/daemon", "--state", "/run/docker/containerd/daemon"}
	tail := newTail(20)
	s, err := a.spawnLogged(tail, "containerd: ", argv...)
	if err != nil {
		return err
	}
	a.dockerMu.Lock()
	a.containerd = s
	a.dockerMu.Unlock()
	a.logf("started %s", strings.Join(argv, " "))
	for {
		if c, err := net.DialTimeout("unix", containerdSocket, time.Second); err == nil {
			c.Close()
			a.logf("containerd accepts connections after %s", time.Since(a.start).Round(time.Millisecond))
			return nil
		}
		select {
		case ws := <-s.Exit:
			time.Sleep(200 * time.Millisecond) // let the log reader catch up
			return fmt.Errorf("containerd exited (%s) before its socket accepted connections: %s", statusString(ws), tail.String())
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd socket %s did not accept connections within %ds: %s", containerdSocket, a.cfg.DockerdTimeoutS, tail.String())
		}
	}
}

// spawnLogged starts argv with its output streamed, line by line with
// prefix, to the dockerd log source and into tail.
func (a *agent) spawnLogged(tail *tail, prefix string, argv ...string) (*started, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s, err := a.spawn(w, argv...)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 4096), 32<<10)
		for sc.Scan() {
			tail.add(sc.Text())
			a.send(agentproto.Message{Type: agentproto.TypeLog, Source: agentproto.SourceDockerd, Line: prefix + sc.Text()})
		}
	}()
	return s, nil
}

func unixHTTP() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", "/var/run/docker.sock")
		}},
	}
}

// dockerGet reads one Engine API endpoint over the daemon's socket (at
// most 1 MiB of it).
func dockerGet(path string) ([]byte, error) {
	c := unixHTTP()
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://docker" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("docker %s: %s", path, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func dockerVersion() (string, error) {
	b, err := dockerGet("/version")
	if err != nil {
		return "", err
	}
	var v struct{ Version string }
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("docker /version: %w", err)
	}
	return v.Version, nil
}

// dockerDriverStatus is docker info's storage driver and its status lines
// (devicemapper: Pool Name, Udev Sync Supported, ...), as evidence of how
// the driver is configured.
func dockerDriverStatus() (string, error) {
	b, err := dockerGet("/info")
	if err != nil {
		return "", err
	}
	return driverStatusLine(b)
}

// driverStatusLine renders the Driver and DriverStatus of a /info reply:
// "Storage Driver: devicemapper; Pool Name: docker-thinpool; ...".
func driverStatusLine(info []byte) (string, error) {
	var v struct {
		Driver       string
		DriverStatus [][2]string
	}
	if err := json.Unmarshal(info, &v); err != nil {
		return "", fmt.Errorf("docker /info: %w", err)
	}
	parts := []string{"Storage Driver: " + v.Driver}
	for _, kv := range v.DriverStatus {
		parts = append(parts, kv[0]+": "+kv[1])
	}
	return strings.Join(parts, "; "), nil
}

// dockerPort is where the agent exposes dockerd's API to the host (QEMU hostfwd).
const dockerPort = 2375

// proxyDocker forwards TCP connections on dockerPort to dockerd's unix
// socket. The agent does this instead of dockerd -H tcp:// so that no
// dockerd version's unauthenticated-TCP policy (warnings, delays, refusal)
// differs between cells.
func (a *agent) proxyDocker() error {
	ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", dockerPort))
	if err != nil {
		return fmt.Errorf("docker api proxy: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				a.logf("docker api proxy: %v", err)
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", "/var/run/docker.sock")
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); u.(*net.UnixConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(c, u); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return nil
}

// tail keeps the last n lines of a stream.
type tail struct {
	ch chan string
}

func newTail(n int) *tail { return &tail{ch: make(chan string, n)} }

func (t *tail) add(s string) {
	for {
		select {
		case t.ch <- s:
			return
		default:
			select {
			case <-t.ch:
			default:
			}
		}
	}
}

func (t *tail) String() string {
	var lines []string
	for {
		select {
		case s := <-t.ch:
			lines = append(lines, s)
		default:
			return strings.Join(lines, "\n")
		}
	}
}

// thinPoolName is the pool thinPool makes (init: agent).
const thinPoolName = "mx-thinpool"

// thinPool turns dev into a device-mapper thin pool with dmsetup and no udev
// sync, for the agent init, which has no udev: the first 256 MiB hold the
// pool's metadata, the rest its data. Under init: systemd the pool is
// Docker's documented direct-lvm one (lvmThinPool).
func (a *agent) thinPool(dev string) error {
	b, err := os.ReadFile("/sys/block/" + strings.TrimPrefix(dev, "/dev/") + "/size")
	if err != nil {
		return fmt.Errorf("thin pool: %w", err)
	}
	var sectors int64
	if _, err := fmt.Sscan(string(b), &sectors); err != nil {
		return fmt.Errorf("thin pool: size of %s: %w", dev, err)
	}
	const meta = 256 << 11 // 256 MiB in 512-byte sectors
	const block = 128      // 64 KiB data blocks
	data := (sectors - meta) / block * block
	if data < 1<<21 {
		return fmt.Errorf("thin pool: scratch disk %s too small (%d sectors)", dev, sectors)
	}
	tables := []struct{ name, table string }{
		{"mx-meta", fmt.Sprintf("0 %d linear %s 0", meta, dev)},
		{"mx-data", fmt.Sprintf("0 %d linear %s %d", data, dev, meta)},
	}
	for _, t := range tables {
		if out, err := a.runCmd(30*time.Second, "dmsetup", "create", "--noudevsync", t.name, "--table", t.table); err != nil {
			return fmt.Errorf("thin pool: %w (%s)", err, out)
		}
	}
	a.runCmd(10*time.Second, "dmsetup", "mknodes")
	zero := make([]byte, 4096)
	if err := os.WriteFile("/dev/mapper/mx-meta", zero, 0); err != nil {
		return fmt.Errorf("thin pool: clear metadata: %w", err)
	}
	pool := fmt.Sprintf("0 %d thin-pool /dev/mapper/mx-meta /dev/mapper/mx-data %d 32768 1 skip_block_zeroing", data, block)
	if out, err := a.runCmd(30*time.Second, "dmsetup", "create", "--noudevsync", thinPoolName, "--table", pool); err != nil {
		return fmt.Errorf("thin pool: %w (%s)", err, out)
	}
	a.runCmd(10*time.Second, "dmsetup", "mknodes")
	if _, err := os.Stat("/dev/mapper/" + thinPoolName); err != nil {
		return fmt.Errorf("thin pool: %w", err)
	}
	a.logf("thin pool %s on %s: %d MiB data", thinPoolName, dev, data>>11)
	return nil
}
