package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/matrixctl/matrixctl/runner/agentproto"
	"golang.org/x/sys/unix"
)

// Guest mode (init: systemd): matrixctl-agent.service runs `matrixctl-agent
// guest`. It opens the agent channel again (the initramfs agent's ended with
// its exec), prepares the scratch disk, writes /etc/docker/daemon.json, tells
// systemd it is ready (so the distro's docker.service, enabled by the
// docker.io package and ordered after this unit, starts), waits for dockerd
// on /run/docker.sock, proxies it to the host and serves commands.

const daemonJSONPath = "/etc/docker/daemon.json"

// daemonConfig is /etc/docker/daemon.json for driver: only the keys the cell
// needs, the storage-opts being the ones Docker's docs tell users to set.
func daemonConfig(d *preparedDriver) ([]byte, error) {
	cfg := map[string]any{"storage-driver": d.name, "data-root": dockerRoot}
	if d.spec.daemonOpts != nil {
		cfg["storage-opts"] = d.spec.daemonOpts()
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (a *agent) runGuest() {
	a.guest = true
	a.state = agentproto.StateRootMounted
	a.introduce()
	go a.serve()
	go a.streamJournal(agentproto.SourceJournal)
	go a.streamJournal(agentproto.SourceDockerd, "-u", "containerd.service", "-u", "docker.service")
	err := a.guestBringUp()
	// systemd waits for READY=1 before it starts docker.service; a failed
	// bring-up still lets the boot finish, so that shutdown works.
	if nerr := sdNotify("READY=1"); nerr != nil {
		a.logf("sd_notify: %v", nerr)
	}
	if err == nil {
		err = a.awaitDocker()
	}
	if err != nil {
		var u *unsupportedError
		if errors.As(err, &u) {
			a.setState(agentproto.StateUnsupported, u.reason)
		} else {
			a.setState(agentproto.StateError, err.Error())
		}
		a.console("%v", err)
	}
	select {}
}

// prepareHost is what both inits do before Docker starts: the network,
// the driver's modules and the scratch disk, reported as scratch-ready.
func (a *agent) prepareHost() (*preparedDriver, error) {
	if err := a.network(); err != nil {
		return nil, err
	}
	spec, err := a.prepareDriver()
	if err != nil {
		return nil, err
	}
	if err := a.prepareScratch(spec); err != nil {
		return nil, err
	}
	a.setState(agentproto.StateScratchReady, "")
	return spec, nil
}

// guestBringUp does what must be done before Docker starts.
func (a *agent) guestBringUp() error {
	spec, err := a.prepareHost()
	if err != nil {
		return err
	}
	b, err := daemonConfig(spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll("/etc/docker", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(daemonJSONPath, b, 0o644); err != nil {
		return err
	}
	a.logf("%s: %s", daemonJSONPath, strings.Join(strings.Fields(string(b)), " "))
	a.setState(agentproto.StateDockerStarting, "")
	return nil
}

// awaitDocker waits until the distro's dockerd answers on its socket, then
// proxies it and reports docker-ready with the guest's init and cmdline.
func (a *agent) awaitDocker() error {
	deadline := time.Now().Add(time.Duration(a.cfg.DockerdTimeoutS) * time.Second)
	var version string
	for {
		v, err := dockerVersion()
		if err == nil {
			version = v
			break
		}
		loadState, _ := a.runCmd(10*time.Second, "systemctl", "show", "-p", "LoadState", "--value", "docker.service")
		if err := missingDockerUnit(loadState); err != nil {
			return err
		}
		if out, _ := a.runCmd(10*time.Second, "systemctl", "is-failed", "docker.service"); strings.TrimSpace(out) == "failed" {
			status, _ := a.runCmd(10*time.Second, "systemctl", "status", "--no-pager", "-n", "20", "docker.service")
			return fmt.Errorf("docker.service failed: %s", status)
		}
		if time.Now().After(deadline) {
			status, _ := a.runCmd(10*time.Second, "systemctl", "status", "--no-pager", "-n", "20", "docker.service")
			return fmt.Errorf("dockerd did not answer within %ds: %s", a.cfg.DockerdTimeoutS, status)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := a.proxyDocker(); err != nil {
		return err
	}
	if pid, err := a.dockerdMainPID(); err == nil {
		a.readyPID.Store(int64(pid))
	} else {
		a.logf("dockerd's main process: %v; its exits will not be reported", err)
	}
	initVersion, _ := a.runCmd(10*time.Second, "systemctl", "--version")
	initVersion, _, _ = strings.Cut(initVersion, "\n")
	a.stMu.Lock()
	a.state = agentproto.StateDockerReady
	a.stMu.Unlock()
	a.send(agentproto.Message{Type: agentproto.TypeState, State: agentproto.StateDockerReady, DockerVersion: version,
		Init: strings.TrimSpace(initVersion), Cmdline: a.cmdline})
	a.logf("docker %s ready after %s (%s)", version, time.Duration(uptimeMS())*time.Millisecond, initVersion)
	if status, err := dockerDriverStatus(); err == nil {
		a.logf("docker info: %s", status)
	} else {
		a.logf("docker info: %v", err)
	}
	a.console("docker-ready %s", version)
	go a.watchDockerd()
	return nil
}

// missingDockerUnit is the error for a host on which systemd knows no
// docker.service (LoadState not-found): nothing will ever start dockerd
// there, as on a real host whose Docker package was removed (directly,
// or by apt along with a package it depends on, such as iptables), so the
// wait ends at once with that reason instead of at the timeout.
func missingDockerUnit(loadState string) error {
	if strings.TrimSpace(loadState) != "not-found" {
		return nil
	}
	return errors.New("docker.service does not exist on this host (systemd: LoadState=not-found): no Docker engine is installed; " +
		"was the Docker package, or a package it depends on, removed (the cell's packages setting)?")
}

// cmdDockerCheck fails when the dockerd that became ready is gone (systemd
// restarted it, or it is not running). Under the agent init the agent is
// dockerd's parent and nothing restarts it: the API ping tells.
func (a *agent) cmdDockerCheck(agentproto.Command) error {
	ready := int(a.readyPID.Load())
	if !a.guest || ready == 0 {
		return nil
	}
	pid, err := a.dockerdMainPID()
	if err == nil && pid == ready {
		return nil
	}
	now := "no main process"
	if err == nil {
		now = fmt.Sprintf("pid %d", pid)
	}
	unit, _ := a.runCmd(10*time.Second, "systemctl", "show", "-p", "Result", "-p", "NRestarts", "-p", "Restart", "docker.service")
	return fmt.Errorf("dockerd (pid %d) that became ready is gone; docker.service runs %s now: %s", ready, now, strings.Join(strings.Fields(unit), " "))
}

// watchDockerd reports every exit of docker.service's main process after
// docker-ready to the host (agentproto.TypeDockerExit), with what systemd
// says about the unit, and follows the dockerd systemd starts in its place.
// The agent is not dockerd's parent under systemd, so it watches the
// process's /proc entry. An exit after shutdown began is not reported:
// stopping docker.service is how the guest powers off.
func (a *agent) watchDockerd() {
	pid := int(a.readyPID.Load())
	if pid == 0 {
		return
	}
	for {
		for processAlive(pid) {
			select {
			case <-a.stopWriting:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		select {
		case <-a.stopWriting:
			return
		default:
		}
		unit, _ := a.runCmd(10*time.Second, "systemctl", "show", "-p", "Result", "-p", "NRestarts", "-p", "Restart", "docker.service")
		reason := fmt.Sprintf("dockerd (pid %d) exited; docker.service: %s", pid, strings.Join(strings.Fields(unit), " "))
		a.logf("%s", reason)
		a.send(agentproto.Message{Type: agentproto.TypeDockerExit, Reason: reason})
		for old := pid; pid == old; {
			select {
			case <-a.stopWriting:
				return
			case <-time.After(time.Second):
			}
			if p, err := a.dockerdMainPID(); err == nil {
				pid = p
			}
		}
	}
}

// processAlive reports whether pid still has a /proc entry.
func processAlive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// streamJournal follows this boot's journal (filtered by args) into source.
func (a *agent) streamJournal(source string, args ...string) {
	argv := append([]string{"journalctl", "-b", "-f", "--no-pager", "--no-tail", "-o", "short-monotonic"}, args...)
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	if _, err := a.spawn(w, argv...); err != nil {
		w.Close()
		a.logf("journal: %v", err)
		return
	}
	w.Close()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 32<<10)
	for sc.Scan() {
		a.send(agentproto.Message{Type: agentproto.TypeLog, Source: source, Line: sc.Text()})
	}
}

// sdNotify sends state to systemd's notification socket ($NOTIFY_SOCKET).
func sdNotify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return errors.New("NOTIFY_SOCKET is not set")
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// dockerdMainPID asks systemd for docker.service's main process.
func (a *agent) dockerdMainPID() (int, error) {
	out, err := a.runCmd(10*time.Second, "systemctl", "show", "-p", "MainPID", "--value", "docker.service")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("docker.service has no main process (MainPID %q)", out)
	}
	return pid, nil
}

// guestKillDockerd SIGKILLs the distro's dockerd. systemd then acts on the
// unit's Restart= (Debian's docker.service: Restart=always, RestartSec=2):
// dockerd comes back; the agent logs what systemd said it would do.
func (a *agent) guestKillDockerd() error {
	pid, err := a.dockerdMainPID()
	if err != nil {
		return err
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return fmt.Errorf("kill dockerd %d: %w", pid, err)
	}
	restart, _ := a.runCmd(10*time.Second, "systemctl", "show", "-p", "Restart", "-p", "RestartUSec", "docker.service")
	a.logf("killed dockerd (pid %d) with SIGKILL; docker.service has %s: systemd restarts it by that rule", pid, strings.Join(strings.Fields(restart), " "))
	return nil
}

// guestShutdown asks systemd to power off: it stops docker.service (and the
// containers), this unit, unmounts the scratch disk and powers the VM off, so
// QEMU exits as it does when the agent powers off itself.
func (a *agent) guestShutdown() error {
	a.send(agentproto.Message{Type: agentproto.TypeShutdown})
	a.stopWriters()
	unix.Sync()
	out, err := a.runCmd(30*time.Second, "systemctl", "poweroff", "--no-block")
	if err != nil {
		a.logf("systemctl poweroff: %v (%s): powering off directly", err, out)
		unix.Sync()
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	return nil
}
