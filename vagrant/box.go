package vagrant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/matrix"
)

// boxPackages are installed into every project-built box besides docker.io:
// the one list of what a box's rootfs holds. A box stands for a standard
// Debian install of its release (Debian's kernel, systemd) on which the user
// ran `apt-get install docker.io` with its Recommends: the standard host
// every project-built host shares (images.StandardHostPackages says why each
// is there), plus what a box needs on top; each group says why.
var boxPackages = append(slices.Clone(images.StandardHostPackages),
	// Standard install: systemd itself and kmod (Priority: important).
	"systemd", "kmod",
	// Standard install: networking (ifupdown + DHCP on eth0, Priority:
	// important) and the basic tools (mount, ps, ip).
	"ifupdown", "isc-dhcp-client", "netbase", "iproute2", "util-linux", "mount", "procps",
	// Harness: Vagrant logs in over ssh as vagrant and becomes root with sudo.
	"openssh-server", "sudo",
	// Harness: the box boots its kernel directly with an initramfs made in
	// the box (zstd compresses it).
	"initramfs-tools", "zstd",
	// Harness: provision.sh makes the scratch disk's filesystem for the
	// drivers the Vagrant provider sets up (overlay2, overlay, vfs on ext4
	// or xfs, btrfs); docker.io suggests these. No lvm2 or
	// thin-provisioning-tools: the provider does not set up devicemapper
	// (a raw scratch disk for a thin pool), it reports it unsupported.
	"e2fsprogs", "xfsprogs", "btrfs-progs",
)

// builderVersion changes when the way a box is made changes, so old cache
// entries are not reused.
// 4: boxes are standard hosts (apparmor, udev: issue 15).
const builderVersion = "4"

// KernelCmdline boots a project-built box: the root filesystem is the whole
// disk (no partition table), the console is the first serial port, the
// interface stays eth0 so ifupdown's DHCP config applies, and a panic reboots
// at once (the domain is set to be destroyed on reboot, so a panic ends it).
const KernelCmdline = "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 panic=-1 quiet loglevel=4"

// InsecureKeyPaths are where Debian's vagrant package ships Vagrant's
// insecure key pair (the public half goes into the box).
var insecureKeyGlobs = []string{
	"/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
	"/usr/lib/ruby/vendor_ruby/vagrant/keys/vagrant.pub",
	"/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
}

// BoxSpec says what a project-built box contains.
type BoxSpec struct {
	Distro matrix.DistroRef
	Kernel matrix.KernelRef
	Docker matrix.DockerRef
}

// Box is a built box and the files its domains boot directly.
type Box struct {
	// Name is the box name to register with `vagrant box add`.
	Name string `json:"name"`
	// File is the .box file (a tar of metadata.json, Vagrantfile, box.img).
	File string `json:"file"`
	// Kernel, Initrd and Cmdline are for libvirt's direct kernel boot.
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// Release is the kernel's uname -r; DockerPackageVersion the installed docker.io.
	Release              string `json:"release"`
	DockerPackageVersion string `json:"docker_package_version"`
}

type boxManifest struct {
	Key     string            `json:"key"`
	Inputs  map[string]string `json:"inputs"`
	Created time.Time         `json:"created"`
	Box     Box               `json:"box"`
	Sizes   map[string]int64  `json:"sizes"`
}

// BuildBox returns the project-built box for spec, building it into the
// cache (cache.Dir()/boxes/<key>) when it is not there: the kernel comes
// from cache.Kernel, the userland from mmdebstrap on the host's mirrors.
// Needs root, mmdebstrap, mkfs.ext4 and qemu-img. Progress lines go to progress.
func BuildBox(ctx context.Context, cache *images.Cache, spec BoxSpec, progress io.Writer) (*Box, error) {
	b, err := buildBox(ctx, cache, spec, progress)
	if err != nil {
		return nil, fmt.Errorf("box %s kernel %s docker %s: %w", spec.Distro.Name, spec.Kernel.Version, spec.Docker.Version, err)
	}
	return b, nil
}

func buildBox(ctx context.Context, cache *images.Cache, spec BoxSpec, progress io.Writer) (*Box, error) {
	if progress == nil {
		progress = io.Discard
	}
	if spec.Distro.Suite == "" {
		return nil, errors.New("distro has no suite")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("building a box needs root (running as uid %d)", os.Geteuid())
	}
	k, err := cache.Kernel(ctx, spec.Kernel)
	if err != nil {
		return nil, err
	}
	m, err := cache.Mirrors()
	if err != nil {
		return nil, err
	}
	pub, err := InsecurePublicKey()
	if err != nil {
		return nil, err
	}
	lines := mirrorLines(m, spec.Distro.Suite)
	pkgs := append([]string(nil), boxPackages...)
	sort.Strings(pkgs)
	pkgs = append(pkgs, "docker.io")
	inputs := map[string]string{
		"builder": builderVersion, "suite": spec.Distro.Suite, "kernel_release": k.Release,
		"kernel_package": k.Package + "=" + k.PackageVersion, "kernel_vmlinuz": k.Vmlinuz,
		"docker": spec.Docker.Version, "packages": strings.Join(pkgs, ","),
		"mirrors": strings.Join(lines, "\n"), "cmdline": KernelCmdline,
	}
	key := hashInputs(inputs)
	name := boxName(spec.Distro.Name, k.Release, spec.Docker.Version, key)
	root := filepath.Join(cache.Dir(), "boxes")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, key)
	unlock, err := images.LockFile(ctx, dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if b, err := readBoxEntry(dir); err == nil {
		// Leased until the cache is closed: `cache prune` skips a box in use.
		return b, cache.Hold(dir)
	}
	_ = os.RemoveAll(dir)
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	fmt.Fprintf(progress, "box %s: building (kernel %s, %s, docker %s)\n", name, k.Release, spec.Distro.Suite, spec.Docker.Version)

	hook := filepath.Join(tmp, "customize.sh")
	if err := os.WriteFile(hook, []byte(customizeScript), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "vagrant.pub"), pub, 0o644); err != nil {
		return nil, err
	}
	tree := filepath.Join(tmp, "tree")
	argv := []string{"unshare", "--mount", "--propagation", "private", "--",
		"mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
		"--include=" + strings.Join(pkgs, ","),
		`--aptopt=Acquire::Languages "none"`, "--dpkgopt=force-unsafe-io",
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--customize-hook=" + hook + ` "$1"`,
		spec.Distro.Suite, tree}
	argv = append(argv, lines...)
	env := []string{"MODULES_SRC=" + k.ModulesDir, "RELEASE=" + k.Release, "CONFIG_SRC=" + k.Config, "PUBKEY=" + filepath.Join(tmp, "vagrant.pub"),
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if _, err := proc.Run(ctx, proc.Cmd{Argv: argv, Dir: tmp, Env: env, Out: prefixWriter(progress, "box mmdebstrap: ")}); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "box %s: rootfs in %s\n", name, time.Since(start).Round(time.Second))
	status, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status"))
	if err != nil {
		return nil, err
	}
	dockerPkg := installedVersion(string(status), "docker.io")
	if images.UpstreamVersion(dockerPkg) != spec.Docker.Version {
		return nil, &images.PackageError{Suite: spec.Distro.Suite, Package: "docker.io", Want: spec.Docker.Version, Have: []string{dockerPkg}}
	}
	for src, dst := range map[string]string{filepath.Join(tree, "boot/initrd.img"): filepath.Join(tmp, "initrd.img"), k.Vmlinuz: filepath.Join(tmp, "vmlinuz")} {
		if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"cp", "--sparse=always", src, dst}}); err != nil {
			return nil, err
		}
	}
	for _, g := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "boot/initrd.img"} {
		ms, _ := filepath.Glob(filepath.Join(tree, g))
		for _, p := range ms {
			_ = os.Remove(p)
		}
	}
	used, err := proc.Output(ctx, proc.Cmd{Argv: []string{"du", "-sxm", tree}})
	if err != nil {
		return nil, err
	}
	mib, err := strconv.Atoi(strings.Fields(used)[0])
	if err != nil {
		return nil, fmt.Errorf("du %s: %q", tree, used)
	}
	// Room for logs and a foreign Docker install; whole GiB for metadata.json.
	gib := (mib+1536)/1024 + 1
	raw := filepath.Join(tmp, "root.ext4")
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, raw, strconv.Itoa(gib) + "G"}}); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	boxDir := filepath.Join(tmp, "box")
	if err := os.MkdirAll(boxDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(boxDir, "box.img")}}); err != nil {
		return nil, err
	}
	_ = os.Remove(raw)
	meta, _ := json.Marshal(map[string]any{"provider": "libvirt", "format": "qcow2", "virtual_size": gib})
	if err := os.WriteFile(filepath.Join(boxDir, "metadata.json"), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(boxDir, "Vagrantfile"), []byte(boxVagrantfile), 0o644); err != nil {
		return nil, err
	}
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"tar", "-C", boxDir, "-cf", filepath.Join(tmp, "matrixctl.box"), "metadata.json", "Vagrantfile", "box.img"}}); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(boxDir); err != nil {
		return nil, err
	}
	man := boxManifest{Key: key, Inputs: inputs, Created: time.Now().UTC(), Sizes: map[string]int64{},
		Box: Box{Name: name, File: "matrixctl.box", Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: KernelCmdline,
			Release: k.Release, DockerPackageVersion: dockerPkg}}
	for _, f := range []string{"matrixctl.box", "vmlinuz", "initrd.img"} {
		st, err := os.Stat(filepath.Join(tmp, f))
		if err != nil {
			return nil, err
		}
		man.Sizes[f] = st.Size()
	}
	mb, err := json.MarshalIndent(man, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), append(mb, '\n'), 0o644); err != nil {
		return nil, err
	}
	if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"sync", "-f", filepath.Join(tmp, "manifest.json")}}); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "box %s: built in %s (%d MiB)\n", name, time.Since(start).Round(time.Second), man.Sizes["matrixctl.box"]>>20)
	b, err := readBoxEntry(dir)
	if err != nil {
		return nil, err
	}
	return b, cache.Hold(dir)
}

// readBoxEntry returns the box of a complete entry: its manifest exists and
// every file has the size it records.
func readBoxEntry(dir string) (*Box, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var man boxManifest
	if err := json.Unmarshal(b, &man); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	for f, size := range man.Sizes {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() != size {
			return nil, fmt.Errorf("box entry %s: %s missing or truncated", dir, f)
		}
	}
	box := man.Box
	box.File = filepath.Join(dir, box.File)
	box.Kernel = filepath.Join(dir, box.Kernel)
	box.Initrd = filepath.Join(dir, box.Initrd)
	return &box, nil
}

// InsecurePublicKey reads the insecure public key Vagrant's package ships.
func InsecurePublicKey() ([]byte, error) {
	for _, g := range insecureKeyGlobs {
		ms, _ := filepath.Glob(g)
		for _, p := range ms {
			if b, err := os.ReadFile(p); err == nil {
				return b, nil
			}
		}
	}
	return nil, errors.New("vagrant's insecure public key not found (is the vagrant package installed?)")
}

// mirrorLines are the sources for a box of suite on the host's mirrors.
func mirrorLines(m images.Mirrors, suite string) []string {
	opt := ""
	if _, err := os.Stat(images.KeyringPath); err == nil {
		opt = "[signed-by=" + images.KeyringPath + "] "
	}
	lines := []string{"deb " + opt + m.Debian + " " + suite + " main", "deb " + opt + m.Debian + " " + suite + "-updates main"}
	if m.Security != "" {
		lines = append(lines, "deb "+opt+m.Security+" "+suite+"-security main")
	}
	return lines
}

func hashInputs(in map[string]string) string {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%q\n", k, in[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// boxName is a box name Vagrant accepts as is (no slash to escape).
func boxName(distro, release, docker, key string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
				return r
			}
			return '-'
		}, s)
	}
	return fmt.Sprintf("matrixctl-%s-k%s-docker%s-%s", clean(distro), clean(release), clean(docker), key[:8])
}

// installedVersion finds pkg's version in a dpkg status file ("" when not installed).
func installedVersion(status, pkg string) string {
	for _, para := range strings.Split(status, "\n\n") {
		var name, version string
		installed := false
		for _, l := range strings.Split(para, "\n") {
			switch {
			case strings.HasPrefix(l, "Package: "):
				name = strings.TrimPrefix(l, "Package: ")
			case strings.HasPrefix(l, "Version: "):
				version = strings.TrimPrefix(l, "Version: ")
			case strings.HasPrefix(l, "Status: "):
				installed = strings.HasSuffix(l, " installed")
			}
		}
		if name == pkg && installed {
			return version
		}
	}
	return ""
}

// prefixWriter writes each chunk it gets to w with prefix (line-ish progress).
func prefixWriter(w io.Writer, prefix string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			fmt.Fprintf(w, "%s%s\n", prefix, l)
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// customizeScript runs as mmdebstrap's customize hook, on the host, with
// the target tree as $1.
const customizeScript = `#!/bin/sh
set -eu
root=$1
mkdir -p "$root/lib/modules"
cp -a "$MODULES_SRC" "$root/lib/modules/$RELEASE"
mkdir -p "$root/boot"
if [ -n "$CONFIG_SRC" ]; then cp "$CONFIG_SRC" "$root/boot/config-$RELEASE"; fi
# A small initramfs: the box only boots as a QEMU guest from a virtio disk
# with an ext4 root. Debian's default (MODULES=most) copies hundreds of
# modules and took over 8 minutes on a loaded 2-core CI machine.
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo MODULES=list > "$root/etc/initramfs-tools/conf.d/matrixctl.conf"
printf '%s\n' crc32c_generic virtio_pci virtio_blk virtio_net ext4 >> "$root/etc/initramfs-tools/modules"
chroot "$root" mkinitramfs -o /boot/initrd.img "$RELEASE"
chroot "$root" useradd -m -s /bin/bash vagrant
echo 'vagrant:vagrant' | chroot "$root" chpasswd
printf 'vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$PUBKEY" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' > "$root/etc/network/interfaces"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' > "$root/etc/fstab"
echo matrixctl-box > "$root/etc/hostname"
printf 'UseDNS no\n' > "$root/etc/ssh/sshd_config.d/matrixctl.conf"
chroot "$root" systemctl enable ssh.service
# Provisioning starts Docker once its data directory is on the scratch disk.
chroot "$root" systemctl disable docker.service docker.socket containerd.service || true
: > "$root/etc/machine-id"
`

// boxVagrantfile goes into the box; the per-cell Vagrantfile sets the rest.
const boxVagrantfile = `# matrixctl-built box: boot it with the kernel and initrd kept beside the
# box in matrixctl's cache (libvirt.kernel/initrd/cmd_line).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
`
