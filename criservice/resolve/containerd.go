package resolve

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	containers "github.com/containerd/containerd/api/services/containers/v1"
	snapshots "github.com/containerd/containerd/api/services/snapshots/v1"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/criguard/criguard/translate"
)

// containerdResolver reads the OCI spec from containerd's own API. It asks three
// services for three fields (the spec, the init pid, the snapshot's mounts), so it
// speaks containerd's gRPC API directly rather than through the full client, which
// would add about 3.5 MB of code to every node's daemon (docs/BENCHMARKS.md §9). It
// connects lazily so that a node without containerd pays nothing.
type containerdResolver struct {
	address, namespace string
	timeout            time.Duration

	connected atomic.Pointer[grpc.ClientConn]
	connect1  singleflight.Group
}

func newContainerdResolver(address, namespace string, timeout time.Duration) *containerdResolver {
	return &containerdResolver{address: address, namespace: namespace, timeout: cmp.Or(timeout, defaultSharedTimeout)}
}

func (*containerdResolver) Name() string { return "containerd" }

// connect makes the connection once; gRPC dials on the first call and again after a
// failure. Concurrent callers share it and none holds a lock across it.
func (r *containerdResolver) connect(ctx context.Context) (*grpc.ClientConn, error) {
	if c := r.connected.Load(); c != nil {
		return c, nil
	}
	return sharedCall(ctx, &r.connect1, "connect", func() (*grpc.ClientConn, error) {
		target := r.address
		if !strings.Contains(target, "://") {
			target = "unix://" + target
		}
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", r.address, err)
		}
		r.connected.Store(c)
		return c, nil
	})
}

// call runs one request in the resolver's namespace, bounded by its timeout, with
// containerd's error mapped back (a missing container is errdefs.ErrNotFound).
func (r *containerdResolver) call(ctx context.Context, f func(context.Context, *grpc.ClientConn) error) error {
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, r.namespace), r.timeout)
	defer cancel()
	return errgrpc.ToNative(f(ctx, conn))
}

func (r *containerdResolver) container(ctx context.Context, id string) (*containers.Container, error) {
	var c *containers.Container
	err := r.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := containers.NewContainersClient(conn).Get(ctx, &containers.GetContainerRequest{ID: id})
		c = resp.GetContainer()
		return err
	})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s in namespace %s", ErrUnknownContainer, id, r.namespace)
	}
	return c, err
}

// cgroupsPath reads linux.cgroupsPath of the OCI spec containerd keeps for a
// container or a sandbox.
func (r *containerdResolver) cgroupsPath(ctx context.Context, id string) (string, error) {
	c, err := r.container(ctx, id)
	if err != nil {
		return "", err
	}
	// The spec travels as JSON in a typeurl Any.
	var spec specs.Spec
	if err := json.Unmarshal(c.GetSpec().GetValue(), &spec); err != nil {
		return "", fmt.Errorf("OCI spec of %s: %w", id, err)
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
	var pid uint32
	err := r.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := tasks.NewTasksClient(conn).Get(ctx, &tasks.GetRequest{ContainerID: id})
		pid = resp.GetProcess().GetPid()
		return err
	})
	if err != nil {
		return 0, err
	}
	if pid == 0 {
		return 0, fmt.Errorf("task of %s has no pid", id)
	}
	return int(pid), nil
}

// snapshotMounts are the mounts of a container's writable snapshot.
func (r *containerdResolver) snapshotMounts(ctx context.Context, id string) ([]mount, error) {
	c, err := r.container(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.GetSnapshotKey() == "" {
		return nil, errors.New("container has no snapshot")
	}
	var mounts []mount
	err = r.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := snapshots.NewSnapshotsClient(conn).Mounts(ctx, &snapshots.MountsRequest{Snapshotter: c.GetSnapshotter(), Key: c.GetSnapshotKey()})
		for _, m := range resp.GetMounts() {
			mounts = append(mounts, mount{typ: m.GetType(), source: m.GetSource(), options: m.GetOptions()})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s/%s: %w", c.GetSnapshotter(), c.GetSnapshotKey(), err)
	}
	return mounts, nil
}

type mount struct {
	typ, source string
	options     []string
}

func (r *containerdResolver) Close() error {
	if c := r.connected.Load(); c != nil {
		return c.Close()
	}
	return nil
}
