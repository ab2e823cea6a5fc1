package runner

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/probes"
)

// ProbesProber runs the probes package's workloads against a machine's dockerd.
type ProbesProber struct {
	// Intensity scales the workloads, 1-10 (0: the probes' default).
	Intensity int
	// Workdir holds build output (the probe binary when it must be built).
	Workdir string
	// Log receives the probes' progress lines; nil discards them.
	Log io.Writer
}

// RunProbes implements Prober. Conclusive probe failures become evidence
// (lost data, corruption, daemon failures, failed operations); anything
// else (the image could not be loaded, the connection broke) is an
// *InfraError.
func (p ProbesProber) RunProbes(ctx context.Context, req ProbeRequest) (ProbeReport, error) {
	cli, err := dockerClient(req.DockerHost)
	if err != nil {
		return ProbeReport{}, err
	}
	defer cli.Close()
	res, err := probes.Run(ctx, cli, probes.Options{
		Probes: req.Probes, Duration: req.Duration, Intensity: p.Intensity,
		RecordsPath: req.RecordsPath, Workdir: p.Workdir, Log: p.Log,
		Keep: req.KeepIO, RunID: req.RunID, Started: req.Started, Sequential: req.Sequential,
	})
	if res == nil {
		if err == nil {
			err = errors.New("no result")
		}
		return ProbeReport{}, Infra("probes", err)
	}
	return probeReport(res, err)
}

var _ CrashVerifier = ProbesProber{}

// VerifyAfterCrash implements CrashVerifier with probes.VerifyIO: the kept
// IO container is started again and checks every block its journal
// promised. A promise that did not survive is in Lost (data-loss).
func (p ProbesProber) VerifyAfterCrash(ctx context.Context, req VerifyRequest) (ProbeReport, error) {
	cli, err := dockerClient(req.DockerHost)
	if err != nil {
		return ProbeReport{}, err
	}
	defer cli.Close()
	r, err := probes.VerifyIO(ctx, cli, probes.VerifyOptions{RunID: req.RunID, RecordsPath: req.RecordsPath, Workdir: p.Workdir, Log: p.Log})
	if r == nil {
		if err == nil {
			err = errors.New("no result")
		}
		return ProbeReport{}, Infra("verify after power cut", err)
	}
	r.Err = err
	return probeReport(&probes.Result{RunID: req.RunID, Probes: []probes.ProbeResult{*r}}, err)
}

// dockerClient talks to host ("" = the environment's DOCKER_HOST).
func dockerClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	} else {
		opts = append(opts, client.FromEnv)
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, Infra("docker client", err)
	}
	return cli, nil
}

// probeReport sorts a probes.Result into evidence.
func probeReport(res *probes.Result, runErr error) (ProbeReport, error) {
	var rep ProbeReport
	var infra []error
	for _, pr := range res.Probes {
		rep.Probes = append(rep.Probes, pr.Summary())
		switch err := pr.Err; {
		case err == nil:
		case errors.Is(err, probes.ErrDataLoss):
			rep.Lost = append(rep.Lost, mismatches(pr, err)...)
		case errors.Is(err, probes.ErrIntegrity):
			rep.Corrupt = append(rep.Corrupt, mismatches(pr, err)...)
		case errors.Is(err, probes.ErrDaemon):
			rep.DaemonErrs = append(rep.DaemonErrs, err.Error())
		case errors.Is(err, probes.ErrProbe):
			rep.FailedOps = append(rep.FailedOps, err.Error())
		default:
			infra = append(infra, err)
		}
	}
	if len(res.Leaked) > 0 {
		rep.DaemonErrs = append(rep.DaemonErrs, fmt.Sprintf("left behind after cleanup: %v", res.Leaked))
	}
	if len(infra) == 0 && runErr != nil && len(rep.Lost)+len(rep.Corrupt)+len(rep.DaemonErrs)+len(rep.FailedOps) == 0 {
		infra = append(infra, runErr)
	}
	if len(infra) > 0 {
		return rep, Infra("probes", errors.Join(infra...))
	}
	return rep, nil
}

func mismatches(pr probes.ProbeResult, err error) []string {
	if len(pr.Mismatches) == 0 {
		return []string{err.Error()}
	}
	out := make([]string, 0, len(pr.Mismatches))
	for _, m := range pr.Mismatches {
		out = append(out, fmt.Sprintf("%s: %s at offset %d: %s: expected %s, found %s", pr.Name, m.File, m.Offset, m.Kind, m.Expected, m.Found))
	}
	return out
}
