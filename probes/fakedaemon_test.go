package probes

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeDaemon is the part of the Engine API that session's bookkeeping uses
// (create, remove, list by the run's label), safe for concurrent use. Every
// object it holds belongs to the one run under test, so list filters are
// not evaluated. Any other method panics through the nil embedded client.
type fakeDaemon struct {
	client.APIClient

	mu                           sync.Mutex
	seq                          int
	containers, volumes, network map[string]bool
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{containers: map[string]bool{}, volumes: map[string]bool{}, network: map[string]bool{}}
}

func (f *fakeDaemon) add(set map[string]bool, name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "" {
		f.seq++
		name = fmt.Sprintf("c%04d", f.seq)
	}
	set[name] = true
	return name
}

func (f *fakeDaemon) del(set map[string]bool, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(set, name)
}

func (f *fakeDaemon) names(set map[string]bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (f *fakeDaemon) ContainerCreate(_ context.Context, _ *container.Config, _ *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, _ string) (container.CreateResponse, error) {
	return container.CreateResponse{ID: f.add(f.containers, "")}, nil
}

func (f *fakeDaemon) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.del(f.containers, id)
	return nil
}

func (f *fakeDaemon) VolumeCreate(_ context.Context, o volume.CreateOptions) (volume.Volume, error) {
	return volume.Volume{Name: f.add(f.volumes, o.Name)}, nil
}

func (f *fakeDaemon) VolumeRemove(_ context.Context, name string, _ bool) error {
	f.del(f.volumes, name)
	return nil
}

func (f *fakeDaemon) NetworkCreate(_ context.Context, name string, _ network.CreateOptions) (network.CreateResponse, error) {
	return network.CreateResponse{ID: f.add(f.network, name)}, nil
}

func (f *fakeDaemon) NetworkRemove(_ context.Context, name string) error {
	f.del(f.network, name)
	return nil
}

func (f *fakeDaemon) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, id := range f.names(f.containers) {
		out = append(out, container.Summary{ID: id, Names: []string{"/" + id}})
	}
	return out, nil
}

func (f *fakeDaemon) VolumeList(context.Context, volume.ListOptions) (volume.ListResponse, error) {
	var out volume.ListResponse
	for _, n := range f.names(f.volumes) {
		out.Volumes = append(out.Volumes, &volume.Volume{Name: n})
	}
	return out, nil
}

func (f *fakeDaemon) NetworkList(context.Context, network.ListOptions) ([]network.Summary, error) {
	var out []network.Summary
	for _, n := range f.names(f.network) {
		out = append(out, network.Summary{Name: n})
	}
	return out, nil
}

func (f *fakeDaemon) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return nil, nil
}
