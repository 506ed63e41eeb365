package resolve

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	containers "github.com/containerd/containerd/api/services/containers/v1"
	snapshots "github.com/containerd/containerd/api/services/snapshots/v1"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeContainerd answers the three services the resolver asks, for one namespace.
type fakeContainerd struct {
	namespace string
	spec      map[string]string // container ID → OCI spec JSON
}

func (f *fakeContainerd) inNamespace(ctx context.Context) error {
	if ns, _ := namespaces.Namespace(ctx); ns != f.namespace {
		return status.Errorf(codes.NotFound, "namespace %q has no containers", ns)
	}
	return nil
}

type containersServer struct {
	containers.UnimplementedContainersServer
	f *fakeContainerd
}

func (c containersServer) Get(ctx context.Context, req *containers.GetContainerRequest) (*containers.GetContainerResponse, error) {
	spec, ok := c.f.spec[req.ID]
	if err := c.f.inNamespace(ctx); err != nil || !ok {
		return nil, status.Errorf(codes.NotFound, "container %q: not found", req.ID)
	}
	return &containers.GetContainerResponse{Container: &containers.Container{ID: req.ID,
		Spec:        &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(spec)},
		Snapshotter: "overlayfs", SnapshotKey: req.ID}}, nil
}

type snapshotsServer struct {
	snapshots.UnimplementedSnapshotsServer
	f *fakeContainerd
}

func (s snapshotsServer) Mounts(ctx context.Context, req *snapshots.MountsRequest) (*snapshots.MountsResponse, error) {
	if err := s.f.inNamespace(ctx); err != nil || req.Snapshotter != "overlayfs" {
		return nil, status.Error(codes.NotFound, "no such snapshot")
	}
	return &snapshots.MountsResponse{Mounts: []*types.Mount{{Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=/l", "upperdir=/snapshots/" + req.Key + "/fs", "workdir=/w"}}}}, nil
}

type tasksServer struct {
	tasks.UnimplementedTasksServer
	f *fakeContainerd
}

func (t tasksServer) Get(ctx context.Context, req *tasks.GetRequest) (*tasks.GetResponse, error) {
	if err := t.f.inNamespace(ctx); err != nil {
		return nil, err
	}
	return &tasks.GetResponse{Process: &task.Process{ID: req.ContainerID, Pid: 4242}}, nil
}

func serveContainerd(t *testing.T, f *fakeContainerd) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	containers.RegisterContainersServer(srv, containersServer{f: f})
	snapshots.RegisterSnapshotsServer(srv, snapshotsServer{f: f})
	tasks.RegisterTasksServer(srv, tasksServer{f: f})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

// The resolver reads the spec, the init pid and the snapshot's upper dir from
// containerd's API in its namespace, and a container containerd does not have is
// ErrUnknownContainer, whichever namespace it is in.
func TestContainerdResolverReadsTheAPI(t *testing.T) {
	f := &fakeContainerd{namespace: "k8s.io", spec: map[string]string{
		"c1":      `{"ociVersion":"1.2.0","linux":{"cgroupsPath":"kubepods-burstable-podu1.slice:cri-containerd:c1"}}`,
		"sandbox": `{"linux":{"cgroupsPath":"/kubepods/burstable/podu1/sandbox"}}`,
		"nolinux": `{"ociVersion":"1.2.0"}`,
		"garbage": `{"linux":`,
	}}
	sock := serveContainerd(t, f)
	r := newContainerdResolver(sock, "k8s.io", 2*time.Second)
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()

	if got, err := r.CgroupsPath(ctx, "c1"); err != nil || got != "kubepods-burstable-podu1.slice:cri-containerd:c1" {
		t.Errorf("CgroupsPath(c1) = %q, %v", got, err)
	}
	if got, err := r.PodCgroupParent(ctx, "sandbox"); err != nil || got != "/kubepods/burstable/podu1" {
		t.Errorf("PodCgroupParent(sandbox) = %q, %v", got, err)
	}
	if _, err := r.CgroupsPath(ctx, "gone"); !errors.Is(err, ErrUnknownContainer) {
		t.Errorf("CgroupsPath(gone) error = %v, want ErrUnknownContainer", err)
	}
	for _, id := range []string{"nolinux", "garbage"} {
		if got, err := r.CgroupsPath(ctx, id); err == nil || errors.Is(err, ErrUnknownContainer) {
			t.Errorf("CgroupsPath(%s) = %q, %v: want an error of its own", id, got, err)
		}
	}
	if pid, err := r.Pid(ctx, "c1"); err != nil || pid != 4242 {
		t.Errorf("Pid(c1) = %d, %v", pid, err)
	}
	if got, err := r.Rootfs(ctx, "c1"); err != nil || got != "/snapshots/c1/fs" {
		t.Errorf("Rootfs(c1) = %q, %v", got, err)
	}

	other := newContainerdResolver(sock, "moby", 2*time.Second)
	t.Cleanup(func() { other.Close() })
	if _, err := other.CgroupsPath(ctx, "c1"); !errors.Is(err, ErrUnknownContainer) {
		t.Errorf("c1 asked in namespace moby: error %v, want ErrUnknownContainer", err)
	}
}

// A containerd that is not there fails the call within the resolver's timeout.
func TestContainerdResolverDown(t *testing.T) {
	r := newContainerdResolver(filepath.Join(t.TempDir(), "none.sock"), "k8s.io", 300*time.Millisecond)
	t.Cleanup(func() { r.Close() })
	start := time.Now()
	if _, err := r.CgroupsPath(context.Background(), "c1"); err == nil || errors.Is(err, ErrUnknownContainer) {
		t.Errorf("CgroupsPath with containerd down: %v, want a connection error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("CgroupsPath with containerd down took %s, want about the 300ms timeout", took)
	}
}
