package probes

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/docker/docker/api/types/filters"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/matrixctl/matrixctl/probes/image"
	"github.com/matrixctl/matrixctl/probes/iowork"
)

// ImageRepo is the probe image's repository; the tag is content-derived.
const ImageRepo = "matrixctl/probe"

// BuildImage returns the probe image tarball for the static binary at bin:
// the binary as /matrixctl-probe, the IO probe's lower-layer files under
// /lower (for copy-up and whiteouts), and the work directories. The same
// binary always gives the same bytes.
func BuildImage(bin string) ([]byte, image.Info, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, image.Info{}, fmt.Errorf("probes: image: %w", err)
	}
	files := []image.File{{Path: "matrixctl-probe", Mode: 0o755, Data: data}}
	for _, lf := range iowork.LowerFiles() {
		files = append(files, image.File{Path: "lower/" + lf.Name, Mode: 0o644, Data: lf.Data})
	}
	tarball, info, err := image.Build(image.Spec{
		Repo:       ImageRepo,
		Files:      files,
		Dirs:       []string{"data/layer", "data/vol", "tmp"},
		Entrypoint: []string{"/matrixctl-probe"},
		Labels:     map[string]string{LabelProbe: "1"},
	})
	if err != nil {
		return nil, image.Info{}, fmt.Errorf("probes: image: %w", err)
	}
	return tarball, info, nil
}

func loadImage(ctx context.Context, cli client.APIClient, tarball []byte) error {
	return image.Load(ctx, cli, bytes.NewReader(tarball))
}

// RemoveStaleImages removes probe images (ImageRepo) other than keep, e.g.
// those of older probe binaries. Images still used by a container stay.
// Run never calls it: the probe image is a shared cache like a base image.
func RemoveStaleImages(ctx context.Context, cli client.APIClient, keep string) ([]string, error) {
	imgs, err := cli.ImageList(ctx, dimage.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", ImageRepo))})
	if err != nil {
		return nil, classify("image", "list probe images", err)
	}
	var removed []string
	for _, im := range imgs {
		for _, tag := range im.RepoTags {
			if tag == keep {
				continue
			}
			if _, err := cli.ImageRemove(ctx, tag, dimage.RemoveOptions{PruneChildren: true}); err == nil {
				removed = append(removed, tag)
			}
		}
	}
	return removed, nil
}
