package resolve

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// RootfsResolver finds the host directory that holds a container's writable layer,
// or a path on the container's root filesystem that leads there (overlay is followed
// to its upper dir by the device chain).
type RootfsResolver interface {
	Rootfs(ctx context.Context, containerID string) (string, error)
}

// Rootfs asks each resolver that knows, in the chain's order.
func (c chain) Rootfs(ctx context.Context, id string) (string, error) {
	var errs []error
	for _, r := range c {
		rr, ok := r.(RootfsResolver)
		if !ok {
			continue
		}
		path, err := rr.Rootfs(ctx, id)
		if err == nil && path != "" {
			return path, nil
		}
		if err == nil {
			err = errors.New("no writable layer")
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.Name(), err))
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("%w: no resolver of %s finds a writable layer", ErrNoRootfs, c.Name())
	}
	return "", fmt.Errorf("%w: %s: %w", ErrNoRootfs, id, errors.Join(errs...))
}

func (a *autoResolver) Rootfs(ctx context.Context, id string) (string, error) {
	c, err := a.resolve(ctx)
	if err != nil {
		return "", err
	}
	return c.Rootfs(ctx, id)
}

// Rootfs is the OCI spec's root.path when it is absolute: CRI-O's mounted overlay
// (…/overlay/<id>/merged), there from CreateContainer on. containerd's is relative to
// its bundle ("rootfs"), and its own API answers instead.
func (r criResolver) Rootfs(ctx context.Context, id string) (string, error) {
	v, err := r.status(ctx, id)
	if err != nil {
		return "", err
	}
	return specRoot(v)
}

func specRoot(v verboseInfo) (string, error) {
	root := v.RuntimeSpec.Root.Path
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("runtimeSpec.root.path %q is not a host path", root)
	}
	return root, nil
}

// Rootfs is the snapshot's upper dir, known from CreateContainer on (before the
// container's first instruction).
func (r *containerdResolver) Rootfs(ctx context.Context, id string) (string, error) {
	client, err := r.connect(ctx)
	if err != nil {
		return "", err
	}
	ctx = namespaces.WithNamespace(ctx, r.namespace)
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return "", err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.SnapshotKey == "" {
		return "", errors.New("container has no snapshot")
	}
	mounts, err := client.SnapshotService(info.Snapshotter).Mounts(ctx, info.SnapshotKey)
	if err != nil {
		return "", fmt.Errorf("snapshot %s/%s: %w", info.Snapshotter, info.SnapshotKey, err)
	}
	for _, m := range mounts {
		for _, o := range m.Options {
			if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
				return upper, nil
			}
		}
		// A snapshotter without overlay (native, a block device) mounts its source.
		if m.Type == "bind" || strings.HasPrefix(m.Source, "/dev/") {
			return m.Source, nil
		}
	}
	return "", fmt.Errorf("snapshot %s/%s has no upper dir", info.Snapshotter, info.SnapshotKey)
}

// Rootfs is GraphDriver's UpperDir (overlay2), known from create on.
func (r *dockerResolver) Rootfs(ctx context.Context, id string) (string, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return "", err
	}
	inspect, err := c.ContainerInspect(ctx, id)
	if err != nil {
		return "", err
	}
	if upper := inspect.GraphDriver.Data["UpperDir"]; upper != "" {
		return upper, nil
	}
	return "", fmt.Errorf("docker graph driver %q gives no UpperDir", inspect.GraphDriver.Name)
}

// Rootfs is the container's root seen through its init process: any runtime, once
// the container runs.
func (r procResolver) Rootfs(ctx context.Context, id string) (string, error) {
	pid, err := r.pid(ctx, id)
	if err != nil {
		return "", err
	}
	if pid <= 0 {
		return "", fmt.Errorf("container %s has no running process", id)
	}
	return filepath.Join(orProc(r.procRoot), strconv.Itoa(pid), "root"), nil
}

func orProc(root string) string {
	if root == "" {
		return "/proc"
	}
	return root
}
