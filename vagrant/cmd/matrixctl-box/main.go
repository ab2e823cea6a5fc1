// Command matrixctl-box builds the project's own Vagrant boxes (`make box`):
// for every runnable cell of a matrix spec whose box in the catalog is
// project-built, it builds the box into the cache (internal/images' cache
// directory, boxes/<key>) and prints where it is. With -add it also
// registers the box with `vagrant box add`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/matrixctl/matrixctl/internal/images"
	"github.com/matrixctl/matrixctl/internal/proc"
	"github.com/matrixctl/matrixctl/matrix"
	"github.com/matrixctl/matrixctl/vagrant"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "matrixctl-box: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	spec := flag.String("f", "matrix.yaml", "matrix spec whose cells name the boxes")
	cacheDir := flag.String("cache", defaultCache(), "artifact cache (MATRIXCTL_CACHE)")
	catalog := flag.String("catalog", "", "box catalog file (default: the one built in, vagrant/boxes.yaml)")
	add := flag.Bool("add", false, "register each box with `vagrant box add`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cat, err := vagrant.ParseCatalog("vagrant/boxes.yaml", vagrant.DefaultCatalog)
	if *catalog != "" {
		cat, err = vagrant.LoadCatalog(*catalog)
	}
	if err != nil {
		return err
	}
	s, err := matrix.Load(*spec)
	if err != nil {
		return err
	}
	cells, err := s.Plan()
	if err != nil {
		return err
	}
	cache, err := images.New(*cacheDir, images.WithProgress(os.Stderr))
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, c := range cells {
		if c.Status != matrix.StatusRunnable || c.Kernel.Box == "" {
			continue
		}
		e, err := cat.Lookup(c)
		if err != nil {
			return err
		}
		if e.Build == nil || done[e.Name+"\x00"+c.Docker.Version] {
			continue
		}
		done[e.Name+"\x00"+c.Docker.Version] = true
		d := c.Distro
		d.Suite = e.Build.Suite
		box, err := vagrant.BuildBox(ctx, cache, vagrant.BoxSpec{Distro: d,
			Kernel: matrix.KernelRef{Version: e.Kernel, Suite: e.Build.KernelSuite}, Docker: c.Docker}, os.Stderr)
		if err != nil {
			return fmt.Errorf("cell %s: %w", c.ID, err)
		}
		if *add {
			if _, err := proc.Run(ctx, proc.Cmd{Argv: []string{"vagrant", "box", "add", "--force", "--name", box.Name, box.File}, Out: os.Stderr}); err != nil {
				return err
			}
		}
		fmt.Printf("%s\t%s\tkernel %s\tinitrd %s\n", box.Name, box.File, box.Kernel, box.Initrd)
	}
	if len(done) == 0 {
		fmt.Fprintf(os.Stderr, "matrixctl-box: no runnable cell of %s names a project-built box\n", *spec)
	}
	return nil
}

func defaultCache() string {
	if d := os.Getenv("MATRIXCTL_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/matrixctl"
	}
	return ".cache/matrixctl"
}
