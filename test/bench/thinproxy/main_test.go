package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/internal/fakeruntime"
)

// TestForwards proves the reference forwarder is a real proxy: replies and errors
// from the runtime reach the client unchanged, so the benchmark compares like with like.
func TestForwards(t *testing.T) {
	for _, v := range []struct{ withMetadata, tuned bool }{{false, false}, {true, false}, {true, true}} {
		withMetadata := v.withMetadata
		t.Run(fmt.Sprintf("metadata=%v,tuned=%v", v.withMetadata, v.tuned), func(t *testing.T) {
			rt := &metadataRuntime{Runtime: fakeruntime.New()}
			rt.AddPod("pod1", "ns", "web", "burstable", nil)
			rt.AddContainer("c1", "pod1", "app")
			upstream := serveRuntime(t, rt)
			var calls atomic.Int64
			client := serveThin(t, upstream, withMetadata, v.tuned, &calls)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			var header metadata.MD
			ctx = metadata.AppendToOutgoingContext(ctx, "x-bench", "yes")
			version, err := client.Version(ctx, &runtimeapi.VersionRequest{}, grpc.Header(&header))
			if err != nil || version.RuntimeName != "containerd" {
				t.Errorf("Version through the forwarder = %v, %v; want runtime containerd", version, err)
			}
			// The metadata round trip happens only when asked for: the thinnest
			// forwarder must stay the thinnest.
			gotMD := rt.seen.Load() != nil && len(rt.seen.Load().Get("x-bench")) > 0
			gotHeader := len(header.Get("x-runtime")) > 0
			if gotMD != withMetadata || gotHeader != withMetadata {
				t.Errorf("caller metadata upstream = %v, runtime header back = %v; want both %v", gotMD, gotHeader, withMetadata)
			}
			st, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "c1"})
			if err != nil || st.GetStatus().GetMetadata().GetName() != "app" {
				t.Errorf("ContainerStatus c1 through the forwarder = %v, %v; want container app", st, err)
			}
			_, err = client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
			if status.Code(err) != codes.NotFound {
				t.Errorf("ContainerStatus of a missing container: err = %v, want NotFound", err)
			}
			if n := calls.Load(); n != 3 {
				t.Errorf("counted %d calls, want 3 (the failed one too)", n)
			}
		})
	}
}

// metadataRuntime records the metadata of Version calls and answers with a header.
type metadataRuntime struct {
	*fakeruntime.Runtime
	seen atomic.Pointer[metadata.MD]
}

func (m *metadataRuntime) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	m.seen.Store(&md)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-runtime", "fake"))
	return m.Runtime.Version(ctx, req)
}

// serveRuntime serves the fake runtime on a unix socket and returns its path.
func serveRuntime(t *testing.T, rt runtimeapi.RuntimeServiceServer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "rt.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, rt)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return sock
}

// serveThin runs the forwarder in front of the runtime socket and returns a client.
func serveThin(t *testing.T, upstream string, withMetadata, tuned bool, calls *atomic.Int64) runtimeapi.RuntimeServiceClient {
	t.Helper()
	server, err := newServer("unix://"+upstream, withMetadata, tuned, calls)
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
	return runtimeapi.NewRuntimeServiceClient(conn)
}
