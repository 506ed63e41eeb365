package criservice

import (
	"context"
	"errors"
	"fmt"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// containerdResolver reads the OCI spec from containerd's own API. It connects
// lazily so that a node without containerd pays nothing.
type containerdResolver struct {
	address, namespace string

	once   sync.Once
	client *containerd.Client
	err    error
}

func newContainerdResolver(address, namespace string) *containerdResolver {
	return &containerdResolver{address: address, namespace: namespace}
}

func (*containerdResolver) Name() string { return "containerd" }

func (r *containerdResolver) connect() (*containerd.Client, error) {
	r.once.Do(func() {
		r.client, r.err = containerd.New(r.address, containerd.WithDefaultNamespace(r.namespace))
	})
	return r.client, r.err
}

func (r *containerdResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	client, err := r.connect()
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", r.address, err)
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

// Pid is the container's init process, for the /proc fallback.
func (r *containerdResolver) Pid(ctx context.Context, id string) (int, error) {
	client, err := r.connect()
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
	if r.client != nil {
		return r.client.Close()
	}
	return nil
}
