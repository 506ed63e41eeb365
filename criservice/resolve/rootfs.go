package resolve

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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
	mounts, err := r.snapshotMounts(ctx, id)
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		for _, o := range m.options {
			if upper, ok := strings.CutPrefix(o, "upperdir="); ok {
				return upper, nil
			}
		}
		// A snapshotter without overlay (native, a block device) mounts its source.
		if m.typ == "bind" || strings.HasPrefix(m.source, "/dev/") {
			return m.source, nil
		}
	}
	return "", fmt.Errorf("the snapshot of %s has no upper dir", id)
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
