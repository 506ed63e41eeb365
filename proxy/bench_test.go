package proxy

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Version calls through the proxy and straight to the in-process fake
// runtime. Client, proxy and runtime share one process, so the difference
// between the two is the proxy's cost; allocs/op drives its GC share.
//
//	go test -run '^$' -bench Unary -benchmem ./proxy/
func BenchmarkUnary(b *testing.B) {
	e := newEnv(b, nil)
	direct, err := grpc.NewClient("unix://"+e.runtimeSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { direct.Close() })
	for name, client := range map[string]runtimeapi.RuntimeServiceClient{
		"direct":  runtimeapi.NewRuntimeServiceClient(direct),
		"proxied": e.rt,
	} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			req := &runtimeapi.VersionRequest{Version: "v1"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Version(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
