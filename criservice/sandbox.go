package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runPodSandbox learns a new pod and puts its pod-scope budget on its cgroup.
func (s *Service) runPodSandbox() Hook {
	return intercept(s, handler[*runtimeapi.RunPodSandboxRequest, *runtimeapi.RunPodSandboxResponse, struct{}]{
		method:  "RunPodSandbox",
		newReq:  func() *runtimeapi.RunPodSandboxRequest { return new(runtimeapi.RunPodSandboxRequest) },
		newResp: func() *runtimeapi.RunPodSandboxResponse { return new(runtimeapi.RunPodSandboxResponse) },
		after: func(ctx context.Context, c *call[*runtimeapi.RunPodSandboxRequest, struct{}], resp *runtimeapi.RunPodSandboxResponse) error {
			s.PodStarted(ctx, podFromConfig(resp.PodSandboxId, c.req.GetConfig()))
			return nil
		},
	})
}

// removePodSandbox forgets a pod.
func (s *Service) removePodSandbox() Hook {
	return intercept(s, handler[*runtimeapi.RemovePodSandboxRequest, *runtimeapi.RemovePodSandboxResponse, struct{}]{
		method: "RemovePodSandbox",
		newReq: func() *runtimeapi.RemovePodSandboxRequest { return new(runtimeapi.RemovePodSandboxRequest) },
		after: func(_ context.Context, c *call[*runtimeapi.RemovePodSandboxRequest, struct{}], _ *runtimeapi.RemovePodSandboxResponse) error {
			s.PodRemoved(c.req.PodSandboxId)
			return nil
		},
	})
}
