package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type updateCall = call[*runtimeapi.UpdateContainerResourcesRequest]

// updateContainerResources keeps kubelet's resource updates from taking the limits
// out of the container's spec, or loosening its pids, memory and cpu: one lookup
// and one decision serve the rewrite and the read-back after the reply.
func (s *Service) updateContainerResources() Hook {
	return intercept(s, handler[*runtimeapi.UpdateContainerResourcesRequest, *runtimeapi.UpdateContainerResourcesResponse]{
		method: "UpdateContainerResources",
		newReq: func() *runtimeapi.UpdateContainerResourcesRequest {
			return new(runtimeapi.UpdateContainerResourcesRequest)
		},
		before: s.beforeUpdate,
		after: func(ctx context.Context, c *updateCall, _ *runtimeapi.UpdateContainerResourcesResponse) error {
			if _, _, err := s.applyContainer(ctx, c.req.ContainerId, c.target); err != nil {
				s.failed("container", c.req.ContainerId, err)
			}
			return nil
		},
	})
}

func (s *Service) beforeUpdate(ctx context.Context, c *updateCall) bool {
	res := c.req.Linux
	if res == nil {
		return false
	}
	t, err := s.containerTarget(ctx, c.req.ContainerId)
	if err != nil {
		return false
	}
	c.target = &t
	withIOMax := s.ioMaxIntoUpdate(ctx, res, t)
	tightened := s.tightenUpdate(res, t)
	return withIOMax || tightened
}

// ioMaxIntoUpdate keeps the container's io.max in an update's unified resources
// (v2), and reports whether it changed them: the runtime writes what the update
// carries, which must not lift the limit criguard put there.
func (s *Service) ioMaxIntoUpdate(ctx context.Context, res *runtimeapi.LinuxContainerResources, t target) bool {
	if s.opts.IO.Version() != 2 || s.opts.DryRun {
		return false
	}
	want, ok := s.wantedIOMax(ctx, t)
	return ok && s.tightenUnifiedIOMax(res, want, "UpdateContainerResources", t)
}

// tightenUpdate keeps kubelet's own updates (resizes, restarts of the kubelet) from
// loosening what the policy tightened, and reports whether it changed res.
func (s *Service) tightenUpdate(res *runtimeapi.LinuxContainerResources, t target) bool {
	want := wantedResources(t.Decision)
	return !want.IsZero() && s.tightenResources(res, want, "UpdateContainerResources", t)
}
