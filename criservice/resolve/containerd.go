package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/singleflight"

	"github.com/criguard/criguard/translate"
)

// containerdResolver reads the OCI spec from containerd's own API. It connects
// lazily so that a node without containerd pays nothing.
type containerdResolver struct {
	address, namespace string
	timeout            time.Duration

	connected atomic.Pointer[containerd.Client]
	connect1  singleflight.Group
}

func newContainerdResolver(address, namespace string, timeout time.Duration) *containerdResolver {
	return &containerdResolver{address: address, namespace: namespace, timeout: cmp.Or(timeout, defaultSharedTimeout)}
}

func (*containerdResolver) Name() string { return "containerd" }

// connect dials once; a failed dial is tried again on the next call. Concurrent
// callers share the dial and none holds a lock across it.
func (r *containerdResolver) connect(ctx context.Context) (*containerd.Client, error) {
	if c := r.connected.Load(); c != nil {
		return c, nil
	}
	return sharedCall(ctx, &r.connect1, "connect", func() (*containerd.Client, error) {
		c, err := containerd.New(r.address, containerd.WithDefaultNamespace(r.namespace), containerd.WithTimeout(r.timeout))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", r.address, err)
		}
		r.connected.Store(c)
		return c, nil
	})
}

// cgroupsPath reads linux.cgroupsPath of the OCI spec containerd keeps for a
// container or a sandbox.
func (r *containerdResolver) cgroupsPath(ctx context.Context, id string) (string, error) {
	client, err := r.connect(ctx)
	if err != nil {
		return "", err
	}
	ctx = namespaces.WithNamespace(ctx, r.namespace)
	c, err := client.LoadContainer(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "", fmt.Errorf("%w: %s in namespace %s", ErrUnknownContainer, id, r.namespace)
	}
	if err != nil {
		return "", err
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return "", err
	}
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return "", errors.New("OCI spec has no linux.cgroupsPath")
	}
	return spec.Linux.CgroupsPath, nil
}

func (r *containerdResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	return r.cgroupsPath(ctx, id)
}

// PodCgroupParent: containerd keeps the sandbox's own container, whose cgroup sits
// in the pod's.
func (r *containerdResolver) PodCgroupParent(ctx context.Context, sandboxID string) (string, error) {
	raw, err := r.cgroupsPath(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	if parent := translate.ParentOfCgroupsPath(raw); parent != "" {
		return parent, nil
	}
	return "", fmt.Errorf("sandbox cgroupsPath %q has no parent", raw)
}

// Pid is the container's init process, for the /proc fallback.
func (r *containerdResolver) Pid(ctx context.Context, id string) (int, error) {
	client, err := r.connect(ctx)
	if err != nil {
		return 0, err
	}
	ctx = namespaces.WithNamespace(ctx, r.namespace)
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return 0, err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, err
	}
	return int(task.Pid()), nil
}

func (r *containerdResolver) Close() error {
	if c := r.connected.Load(); c != nil {
		return c.Close()
	}
	return nil
}
