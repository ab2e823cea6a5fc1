package qemu

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/client"
)

// DockerClient returns a Docker API client for a ready guest, negotiating the
// API version with the guest's dockerd.
func DockerClient(r Ready) (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.WithHost(r.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", r.DockerHost, err)
	}
	return c, nil
}

// pingDocker retries a Docker ping through host until it answers or d passes.
func pingDocker(ctx context.Context, host string, d time.Duration) error {
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("docker ping %s: %w", host, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
