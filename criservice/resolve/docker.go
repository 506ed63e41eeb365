package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"golang.org/x/sync/singleflight"

	"github.com/criguard/criguard/translate"
)

// dockerResolver asks dockerd (behind cri-dockerd): the container's
// HostConfig.CgroupParent and id, with the daemon's cgroup driver.
type dockerResolver struct {
	endpoint string
	timeout  time.Duration

	connected atomic.Pointer[dockerConn]
	connect1  singleflight.Group
}

type dockerConn struct {
	client  *client.Client
	systemd bool
}

func newDockerResolver(endpoint string, timeout time.Duration) *dockerResolver {
	return &dockerResolver{endpoint: endpoint, timeout: cmp.Or(timeout, defaultSharedTimeout)}
}

func (*dockerResolver) Name() string { return "docker" }

// connect makes the client and learns the daemon's cgroup driver once; concurrent
// callers share the Info call and none holds a lock across it.
func (r *dockerResolver) connect(ctx context.Context) (*client.Client, error) {
	if c := r.connected.Load(); c != nil {
		return c.client, nil
	}
	return sharedCall(ctx, &r.connect1, "connect", func() (*client.Client, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		// On failure nothing is kept: dockerd may simply not be up yet.
		c, err := client.NewClientWithOpts(client.WithHost(r.endpoint), client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("docker info at %s: %w", r.endpoint, err)
		}
		r.connected.Store(&dockerConn{client: c, systemd: info.CgroupDriver == "systemd"})
		return c, nil
	})
}

func (r *dockerResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return "", err
	}
	inspect, err := c.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("%w: %s", ErrUnknownContainer, id)
	}
	if err != nil {
		return "", err
	}
	if inspect.HostConfig == nil {
		return "", errors.New("docker inspect has no HostConfig")
	}
	return translate.DockerCgroupsPath(inspect.HostConfig.CgroupParent, inspect.ID, r.connected.Load().systemd), nil
}

// PodCgroupParent: a cri-dockerd sandbox is a docker container whose
// CgroupParent is the pod's cgroup.
func (r *dockerResolver) PodCgroupParent(ctx context.Context, sandboxID string) (string, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return "", err
	}
	inspect, err := c.ContainerInspect(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	if inspect.HostConfig == nil || inspect.HostConfig.CgroupParent == "" {
		return "", errors.New("sandbox container has no CgroupParent")
	}
	return inspect.HostConfig.CgroupParent, nil
}

// Pid is the container's init process, for the /proc fallback.
func (r *dockerResolver) Pid(ctx context.Context, id string) (int, error) {
	c, err := r.connect(ctx)
	if err != nil {
		return 0, err
	}
	inspect, err := c.ContainerInspect(ctx, id)
	if err != nil {
		return 0, err
	}
	if inspect.State == nil {
		return 0, errors.New("docker inspect has no State")
	}
	return inspect.State.Pid, nil
}
