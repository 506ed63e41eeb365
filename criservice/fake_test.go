package criservice

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

// fakeRuntime is an in-process CRI runtime holding pods and containers.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu         sync.Mutex
	name       string
	pods       map[string]*runtimeapi.PodSandbox
	parents    map[string]string // pod id → cgroup_parent, as in containerd's verbose info
	containers map[string]*runtimeapi.Container
	paths      map[string]string // container id → runtimeSpec.linux.cgroupsPath
	pids       map[string]int
	stopped    []string
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{name: "containerd", pods: map[string]*runtimeapi.PodSandbox{}, parents: map[string]string{},
		containers: map[string]*runtimeapi.Container{}, paths: map[string]string{}, pids: map[string]int{}}
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: f.name, RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for id, p := range f.pods {
		if fid := req.GetFilter().GetId(); fid != "" && fid != id {
			continue
		}
		resp.Items = append(resp.Items, proto.Clone(p).(*runtimeapi.PodSandbox))
	}
	return resp, nil
}

func (f *fakeRuntime) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for id, c := range f.containers {
		if fid := req.GetFilter().GetId(); fid != "" && fid != id {
			continue
		}
		if st := req.GetFilter().GetState(); st != nil && st.State != c.State {
			continue
		}
		resp.Containers = append(resp.Containers, proto.Clone(c).(*runtimeapi.Container))
	}
	return resp, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[req.ContainerId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	info := map[string]any{"pid": f.pids[req.ContainerId], "runtimeSpec": map[string]any{"linux": map[string]any{"cgroupsPath": f.paths[req.ContainerId]}}}
	b, _ := json.Marshal(info)
	return &runtimeapi.ContainerStatusResponse{
		Status: &runtimeapi.ContainerStatus{Id: c.Id, Metadata: c.Metadata, State: c.State},
		Info:   map[string]string{"info": string(b)},
	}, nil
}

func (f *fakeRuntime) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.PodSandboxId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %q not found", req.PodSandboxId)
	}
	b, _ := json.Marshal(map[string]any{"config": map[string]any{"linux": map[string]any{"cgroup_parent": f.parents[p.Id]}}})
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: p.Id, Metadata: p.Metadata}, Info: map[string]string{"info": string(b)}}, nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, req.ContainerId)
	if c, ok := f.containers[req.ContainerId]; ok {
		c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// addPod registers a pod as kubelet's cgroupfs driver would make it.
func (f *fakeRuntime) addPod(id, namespace, name, qos string, annotations map[string]string) *runtimeapi.PodSandboxConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	md := &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: "uid-" + id}
	parent := "/kubepods/" + qos + "/pod" + md.Uid
	if qos == "guaranteed" {
		parent = "/kubepods/pod" + md.Uid
	}
	f.pods[id] = &runtimeapi.PodSandbox{Id: id, Metadata: md, State: runtimeapi.PodSandboxState_SANDBOX_READY,
		Labels: map[string]string{"app": name}, Annotations: annotations}
	f.parents[id] = parent
	return &runtimeapi.PodSandboxConfig{Metadata: md, Labels: map[string]string{"app": name}, Annotations: annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent}}
}

func (f *fakeRuntime) addContainer(id, podID, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[id] = &runtimeapi.Container{Id: id, PodSandboxId: podID, State: runtimeapi.ContainerState_CONTAINER_RUNNING,
		Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1"}}
	f.paths[id] = f.parents[podID] + "/" + id
}

func serveFake(t *testing.T, f *fakeRuntime) runtimeapi.RuntimeServiceClient {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "rt.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// fakeHost is a v1 blkio hierarchy in a temp dir; mkdir makes cgroups with
// empty throttle files as the kernel would.
type fakeHost struct {
	mount string
	io    cgroup.IO
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	root := t.TempDir()
	mountinfo := fmt.Sprintf("38 31 0:35 / %s/blkio rw,relatime shared:16 - cgroup cgroup rw,blkio\n", root)
	h, err := cgroup.ParseMountInfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	io, err := h.IO()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeHost{mount: filepath.Join(root, "blkio"), io: io}
}

var throttleFiles = []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device",
	"blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"}

func (h *fakeHost) mkdir(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.Join(h.mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range throttleFiles {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// file reads one throttle file of a cgroup, trimmed.
func (h *fakeHost) file(t *testing.T, rel, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.mount, rel, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeDevices resolves every spec to one disk without touching the host.
type fakeDevices struct{}

func (fakeDevices) Resolve(spec string) (cgroup.Device, error) {
	if spec == "/not/a/disk" {
		return cgroup.Device{}, fmt.Errorf("%s is on tmpfs, which has no block device", spec)
	}
	return cgroup.Device{Major: 254, Minor: 0}, nil
}

func mustPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, diags := policy.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("policy: %v", diags)
	}
	return p
}
