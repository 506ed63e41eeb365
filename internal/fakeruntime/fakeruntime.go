// Package fakeruntime is an in-process CRI runtime for tests: pods and
// containers laid out as kubelet's cgroupfs driver would make them, with the
// verbose status containerd gives.
package fakeruntime

import (
	"cmp"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime is an in-process CRI runtime holding pods and containers.
type Runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	Mu         sync.Mutex
	Name       string
	Pods       map[string]*runtimeapi.PodSandbox
	Parents    map[string]string // pod id → cgroup_parent, as in containerd's verbose info
	Containers map[string]*runtimeapi.Container
	Paths      map[string]string // container id → runtimeSpec.linux.cgroupsPath
	Pids       map[string]int
	// StatusImages is the image ContainerStatus names, where it differs from the
	// listing's (containerd lists digests but names the image in the status).
	StatusImages map[string]*runtimeapi.ImageSpec
	// Mounts are the mounts ContainerStatus reports, as every runtime does.
	Mounts  map[string][]*runtimeapi.Mount
	Stopped []string
	// Resources are what ContainerStatus reports a container runs with, as
	// containerd and CRI-O do; UpdateContainerResources replaces them and records
	// the request in Updates.
	Resources map[string]*runtimeapi.LinuxContainerResources
	Updates   []*runtimeapi.UpdateContainerResourcesRequest
}

func New() *Runtime {
	return &Runtime{Name: "containerd", Pods: map[string]*runtimeapi.PodSandbox{}, Parents: map[string]string{},
		Containers: map[string]*runtimeapi.Container{}, Paths: map[string]string{}, Pids: map[string]int{}, StatusImages: map[string]*runtimeapi.ImageSpec{},
		Resources: map[string]*runtimeapi.LinuxContainerResources{}}
}

func (f *Runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: f.Name, RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

func (f *Runtime) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for id, p := range f.Pods {
		if fid := req.GetFilter().GetId(); fid != "" && fid != id {
			continue
		}
		resp.Items = append(resp.Items, proto.Clone(p).(*runtimeapi.PodSandbox))
	}
	return resp, nil
}

func (f *Runtime) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for id, c := range f.Containers {
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

func (f *Runtime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	c, ok := f.Containers[req.ContainerId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	info := map[string]any{"pid": f.Pids[req.ContainerId], "runtimeSpec": map[string]any{"linux": map[string]any{"cgroupsPath": f.Paths[req.ContainerId]}}}
	b, _ := json.Marshal(info)
	return &runtimeapi.ContainerStatusResponse{
		Status: &runtimeapi.ContainerStatus{Id: c.Id, Metadata: c.Metadata, State: c.State, Image: cmp.Or(f.StatusImages[c.Id], c.Image), Mounts: f.Mounts[c.Id],
			Resources: containerResources(f.Resources[c.Id])},
		Info: map[string]string{"info": string(b)},
	}, nil
}

func containerResources(linux *runtimeapi.LinuxContainerResources) *runtimeapi.ContainerResources {
	if linux == nil {
		return nil
	}
	return &runtimeapi.ContainerResources{Linux: proto.Clone(linux).(*runtimeapi.LinuxContainerResources)}
}

func (f *Runtime) UpdateContainerResources(_ context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if _, ok := f.Containers[req.ContainerId]; !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	f.Updates = append(f.Updates, req)
	f.Resources[req.ContainerId] = proto.Clone(req.Linux).(*runtimeapi.LinuxContainerResources)
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

func (f *Runtime) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	p, ok := f.Pods[req.PodSandboxId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %q not found", req.PodSandboxId)
	}
	b, _ := json.Marshal(map[string]any{"config": map[string]any{"linux": map[string]any{"cgroup_parent": f.Parents[p.Id]}}})
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: p.Id, Metadata: p.Metadata}, Info: map[string]string{"info": string(b)}}, nil
}

func (f *Runtime) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Stopped = append(f.Stopped, req.ContainerId)
	if c, ok := f.Containers[req.ContainerId]; ok {
		c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// addPod registers a pod as kubelet's cgroupfs driver would make it.
func (f *Runtime) AddPod(id, namespace, name, qos string, annotations map[string]string) *runtimeapi.PodSandboxConfig {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	md := &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: "uid-" + id}
	parent := "/kubepods/" + qos + "/pod" + md.Uid
	if qos == "guaranteed" {
		parent = "/kubepods/pod" + md.Uid
	}
	f.Pods[id] = &runtimeapi.PodSandbox{Id: id, Metadata: md, State: runtimeapi.PodSandboxState_SANDBOX_READY,
		Labels: map[string]string{"app": name}, Annotations: annotations}
	f.Parents[id] = parent
	return &runtimeapi.PodSandboxConfig{Metadata: md, Labels: map[string]string{"app": name}, Annotations: annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent}}
}

func (f *Runtime) AddContainer(id, podID, name string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Containers[id] = &runtimeapi.Container{Id: id, PodSandboxId: podID, State: runtimeapi.ContainerState_CONTAINER_RUNNING,
		Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1"}}
	f.Paths[id] = f.Parents[podID] + "/" + id
}

// Serve serves f on a fresh unix socket until the test ends.
func Serve(t testing.TB, f *Runtime) (runtimeapi.RuntimeServiceClient, string) {
	t.Helper()
	return ServeRuntime(t, f)
}

// Hung is a runtime that never answers: every call waits until its caller gives up.
type Hung struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func (Hung) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (Hung) ListPodSandbox(ctx context.Context, _ *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (Hung) ListContainers(ctx context.Context, _ *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (Hung) ContainerStatus(ctx context.Context, _ *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// ServeRuntime serves any runtime implementation on a fresh unix socket.
func ServeRuntime(t testing.TB, f runtimeapi.RuntimeServiceServer) (runtimeapi.RuntimeServiceClient, string) {
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
	return runtimeapi.NewRuntimeServiceClient(conn), sock
}

// StartContainer marks a container running, as a runtime would.
func (f *Runtime) StartContainer(_ context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	c, ok := f.Containers[req.ContainerId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
	return &runtimeapi.StartContainerResponse{}, nil
}
