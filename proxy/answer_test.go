package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Answer replaces an error of the runtime with a response, only when it says so;
// a successful reply never reaches it.
func TestAnswerReplacesOnlyTheErrorsItChooses(t *testing.T) {
	var versionAsked, afterSawErr atomic.Bool
	e := newEnv(t, func(p *Proxy) {
		p.Handle("/runtime.v1.RuntimeService/ListPodSandboxStats", Hook{
			Answer: func(_ context.Context, req []byte, err error) ([]byte, bool) {
				if status.Code(err) != codes.Unimplemented {
					return nil, false
				}
				var r runtimeapi.ListPodSandboxStatsRequest
				if proto.Unmarshal(req, &r) != nil {
					return nil, false
				}
				b, _ := proto.Marshal(&runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{
					{Attributes: &runtimeapi.PodSandboxAttributes{Id: r.GetFilter().GetId()}}}})
				return b, true
			},
			After: func(_ context.Context, _ any, _, resp []byte, err error) error {
				afterSawErr.Store(err != nil || resp == nil)
				return err
			},
		})
		p.Handle("/runtime.v1.RuntimeService/PodSandboxStats", Hook{
			Answer: func(context.Context, []byte, error) ([]byte, bool) { return nil, false },
		})
		p.Handle("/runtime.v1.RuntimeService/Version", Hook{
			Answer: func(context.Context, []byte, error) ([]byte, bool) {
				versionAsked.Store(true)
				return nil, false
			},
		})
	})
	ctx := ctxTimeout(t, 5*time.Second)
	resp, err := e.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "p1"}})
	if err != nil || len(resp.Stats) != 1 || resp.Stats[0].Attributes.Id != "p1" {
		t.Fatalf("answered ListPodSandboxStats = %v, %v", resp, err)
	}
	if afterSawErr.Load() {
		t.Errorf("After saw the runtime's error, not the answer")
	}
	if _, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "p1"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("an error Answer declined = %v, want the runtime's Unimplemented", err)
	}
	if _, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil || versionAsked.Load() {
		t.Errorf("Answer was asked about a successful reply (err %v)", err)
	}
}
