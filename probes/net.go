package probes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"

	"github.com/matrixctl/matrixctl/probes/stats"
)

const netPort = "7000"

// runNet runs TCP streams and short connections between containers on the
// default bridge (server by IP) and on a user-defined network (server by
// name through Docker's embedded DNS), then churns containers that publish a
// port on the daemon host's loopback while a client in the daemon host's
// network namespace connects through it.
func runNet(ctx context.Context, s *session, r *ProbeResult) error {
	n := s.opts.Intensity
	d := s.opts.Duration
	userNet, err := s.createNetwork(ctx, Net, "net")
	if err != nil {
		return err
	}
	// servers
	bridgeSrv, err := s.create(ctx, Net, containerSpec{role: "net-srv-bridge", cmd: []string{"net-server", "-listen", ":" + netPort}})
	if err != nil {
		return err
	}
	userSrv, err := s.create(ctx, Net, containerSpec{role: "net-srv-user", cmd: []string{"net-server", "-listen", ":" + netPort}, network: userNet, aliases: []string{"mxp-server"}})
	if err != nil {
		return err
	}
	for _, id := range []string{bridgeSrv, userSrv} {
		if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return classify(Net, "start server", err)
		}
	}
	insp, err := s.cli.ContainerInspect(ctx, bridgeSrv)
	if err != nil {
		return classify(Net, "inspect server", err)
	}
	ip := ""
	if insp.NetworkSettings != nil {
		if ep := insp.NetworkSettings.Networks["bridge"]; ep != nil {
			ip = ep.IPAddress
		}
	}
	if ip == "" {
		return &ProbeError{Probe: Net, Kind: ErrDaemon, Detail: "server on the default bridge got no IP address"}
	}
	clientArgs := func(target, source string) []string {
		return []string{"net-client", "-target", target, "-source", source,
			"-duration", (d / 2).String(), "-streams", strconv.Itoa(2 * n), "-parallel", strconv.Itoa(4 * n)}
	}
	bridgeCli, err := s.create(ctx, Net, containerSpec{role: "net-cli-bridge", cmd: clientArgs(ip+":"+netPort, "net:bridge")})
	if err != nil {
		return err
	}
	userCli, err := s.create(ctx, Net, containerSpec{role: "net-cli-user", cmd: clientArgs("mxp-server:"+netPort, "net:user-network"), network: userNet})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	outs := make([]outcome, 2)
	errs := make([]error, 2)
	for i, id := range []string{bridgeCli, userCli} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = s.runToExit(ctx, Net, id, watchdog(d))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var failures []error
	for i, src := range []string{"bridge_", "usernet_"} {
		sub := &ProbeResult{Metrics: map[string]float64{}}
		if err := judge(Net, outs[i], sub, ErrProbe); err != nil {
			failures = append(failures, fmt.Errorf("%s%w", src, err))
		}
		for k, v := range sub.Metrics {
			r.Metrics[src+k] = v
		}
		r.Errors = append(r.Errors, sub.Errors...)
	}
	for _, id := range []string{bridgeSrv, userSrv} {
		s.removeContainer(id)
	}
	if err := portChurn(ctx, s, r, d/2); err != nil {
		failures = append(failures, err)
	}
	netTotals(r.Metrics)
	if len(failures) > 0 {
		return &ProbeError{Probe: Net, Kind: ErrProbe, Detail: errors.Join(failures...).Error()}
	}
	r.OK = true
	return nil
}

// netTotals adds the load the net probe put on the daemon's networking over
// all its paths: conns_ok (connections completed on the default bridge, the
// user-defined network and through published ports) and stream_bytes.
func netTotals(m map[string]float64) {
	m["conns_ok"] = m["bridge_conns_ok"] + m["usernet_conns_ok"] + m["pubport_conns_ok"]
	m["stream_bytes"] = m["bridge_stream_bytes"] + m["usernet_stream_bytes"]
}

// portChurn creates and removes server containers that publish netPort on
// 127.0.0.1:<port> of the daemon host, and after each start connects through
// the published port from a client container in the host's network
// namespace (so it works when the daemon runs inside a VM).
func portChurn(ctx context.Context, s *session, r *ProbeResult, d time.Duration) error {
	n := s.opts.Intensity
	cli, err := s.create(ctx, Net, containerSpec{role: "net-cli-host", cmd: []string{"sleep"}, network: "host"})
	if err != nil {
		return err
	}
	if err := s.cli.ContainerStart(ctx, cli, container.StartOptions{}); err != nil {
		return classify(Net, "start host-network client", err)
	}
	rng := rand.New(rand.NewPCG(seedOf(s.runID), 7))
	port := 30000 + rng.IntN(20000)
	var startLat, removeLat stats.Latencies
	var cycles, okConns, failed, portRetries int
	deadline := time.Now().Add(d)
	for cycle := 0; cycle < 2 || time.Now().Before(deadline); cycle++ {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", Net, ctx.Err())
		}
		var srv string
		var startErr error
		for try := 0; try < 4; try++ {
			bind := nat.PortMap{nat.Port(netPort + "/tcp"): {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}}
			srv, err = s.create(ctx, Net, containerSpec{role: fmt.Sprintf("net-pub-%d", cycle), cmd: []string{"net-server", "-listen", ":" + netPort}, ports: bind})
			if err != nil {
				return err
			}
			t := time.Now()
			startErr = s.cli.ContainerStart(ctx, srv, container.StartOptions{})
			startLat.Add(time.Since(t))
			if startErr == nil {
				break
			}
			// the port may be taken by something else on the daemon host: move on
			s.removeContainer(srv)
			portRetries++
			port = 30000 + rng.IntN(20000)
		}
		if startErr != nil {
			return classify(Net, "start published-port server", startErr)
		}
		o, err := s.exec(ctx, Net, cli, []string{"/matrixctl-probe", "net-client", "-target", "127.0.0.1:" + strconv.Itoa(port),
			"-source", "net:published-port", "-streams", "0", "-parallel", "2", "-count", strconv.Itoa(10 * n), "-warmup", "10s"}, 2*time.Minute)
		if err != nil {
			return err
		}
		sub := &ProbeResult{Metrics: map[string]float64{}}
		if jerr := judge(Net, o, sub, ErrProbe); jerr != nil {
			failed++
			r.Errors = append(r.Errors, fmt.Sprintf("published-port cycle %d: %v", cycle, jerr))
		}
		r.Errors = append(r.Errors, sub.Errors...)
		okConns += int(sub.Metrics["conns_ok"])
		t := time.Now()
		if err := s.removeContainer(srv); err != nil {
			return classify(Net, "remove published-port server", err)
		}
		removeLat.Add(time.Since(t))
		cycles++
	}
	r.Metrics["pubport_cycles"] = float64(cycles)
	r.Metrics["pubport_conns_ok"] = float64(okConns)
	r.Metrics["pubport_failed_cycles"] = float64(failed)
	r.Metrics["pubport_port_retries"] = float64(portRetries)
	startLat.Into(r.Metrics, "pubport_start_latency")
	removeLat.Into(r.Metrics, "pubport_remove_latency")
	s.writer(Net).Metric("net:published-port", map[string]float64{
		"cycles": float64(cycles), "conns_ok": float64(okConns), "failed_cycles": float64(failed),
	})
	if failed > 0 {
		return fmt.Errorf("published-port churn: %d of %d cycles failed", failed, cycles)
	}
	return nil
}
