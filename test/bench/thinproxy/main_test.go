package main

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice/fakeruntime"
)

// TestForwards proves the reference forwarder is a real proxy: replies and errors
// from the runtime reach the client unchanged, so the benchmark compares like with like.
func TestForwards(t *testing.T) {
	rt := fakeruntime.New()
	rt.AddPod("pod1", "ns", "web", "burstable", nil)
	rt.AddContainer("c1", "pod1", "app")
	_, upstream := fakeruntime.Serve(t, rt)

	server, err := newServer("unix://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "thin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(ln)
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	version, err := client.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || version.RuntimeName != "containerd" {
		t.Errorf("Version through the forwarder = %v, %v; want runtime containerd", version, err)
	}
	st, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "c1"})
	if err != nil || st.GetStatus().GetMetadata().GetName() != "app" {
		t.Errorf("ContainerStatus c1 through the forwarder = %v, %v; want container app", st, err)
	}
	_, err = client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus of a missing container: err = %v, want NotFound", err)
	}
}
