package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runPodSandbox learns a new pod and puts its pod-scope budget on its cgroup.
func (f *criFront) runPodSandbox() Hook {
	return intercept(f, handler[*runtimeapi.RunPodSandboxRequest, *runtimeapi.RunPodSandboxResponse, struct{}]{
		method:  "RunPodSandbox",
		newReq:  func() *runtimeapi.RunPodSandboxRequest { return new(runtimeapi.RunPodSandboxRequest) },
		newResp: func() *runtimeapi.RunPodSandboxResponse { return new(runtimeapi.RunPodSandboxResponse) },
		after: func(ctx context.Context, c *call[*runtimeapi.RunPodSandboxRequest, struct{}], resp *runtimeapi.RunPodSandboxResponse) error {
			f.engine.PodStarted(ctx, podFromConfig(resp.PodSandboxId, c.req.GetConfig()))
			return nil
		},
	})
}

// removePodSandbox forgets a pod.
func (f *criFront) removePodSandbox() Hook {
	return intercept(f, handler[*runtimeapi.RemovePodSandboxRequest, *runtimeapi.RemovePodSandboxResponse, struct{}]{
		method: "RemovePodSandbox",
		newReq: func() *runtimeapi.RemovePodSandboxRequest { return new(runtimeapi.RemovePodSandboxRequest) },
		after: func(_ context.Context, c *call[*runtimeapi.RemovePodSandboxRequest, struct{}], _ *runtimeapi.RemovePodSandboxResponse) error {
			f.engine.PodRemoved(c.req.PodSandboxId)
			return nil
		},
	})
}
