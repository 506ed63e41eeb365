package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runPodSandbox learns a new pod and puts its pod-scope budget on its cgroup.
func (s *Service) runPodSandbox() Hook {
	return intercept(s, handler[*runtimeapi.RunPodSandboxRequest, *runtimeapi.RunPodSandboxResponse]{
		method:  "RunPodSandbox",
		newReq:  func() *runtimeapi.RunPodSandboxRequest { return new(runtimeapi.RunPodSandboxRequest) },
		newResp: func() *runtimeapi.RunPodSandboxResponse { return new(runtimeapi.RunPodSandboxResponse) },
		after: func(ctx context.Context, c *call[*runtimeapi.RunPodSandboxRequest], resp *runtimeapi.RunPodSandboxResponse) error {
			pod := podFromConfig(resp.PodSandboxId, c.req.GetConfig())
			s.cache.putPod(pod)
			if _, _, err := s.ApplyPod(ctx, pod); err != nil {
				s.failed("pod", pod.ID, err)
			}
			return nil
		},
	})
}

// removePodSandbox forgets a pod.
func (s *Service) removePodSandbox() Hook {
	return intercept(s, handler[*runtimeapi.RemovePodSandboxRequest, *runtimeapi.RemovePodSandboxResponse]{
		method: "RemovePodSandbox",
		newReq: func() *runtimeapi.RemovePodSandboxRequest { return new(runtimeapi.RemovePodSandboxRequest) },
		after: func(_ context.Context, c *call[*runtimeapi.RemovePodSandboxRequest], _ *runtimeapi.RemovePodSandboxResponse) error {
			s.cache.forgetPod(c.req.PodSandboxId)
			return nil
		},
	})
}
