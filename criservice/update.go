package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type updateCall = call[*runtimeapi.UpdateContainerResourcesRequest, *Update]

// updateContainerResources keeps kubelet's resource updates from taking the limits
// out of the container's spec, or loosening its pids, memory and cpu: one lookup
// and one decision serve the rewrite and the read-back after the reply.
func (f *criFront) updateContainerResources() Hook {
	return intercept(f, handler[*runtimeapi.UpdateContainerResourcesRequest, *runtimeapi.UpdateContainerResourcesResponse, *Update]{
		method: "UpdateContainerResources",
		newReq: func() *runtimeapi.UpdateContainerResourcesRequest {
			return new(runtimeapi.UpdateContainerResourcesRequest)
		},
		before: func(ctx context.Context, c *updateCall) bool {
			if c.req.Linux == nil {
				return false
			}
			var changed bool
			c.event, changed = f.engine.Updating(ctx, c.req.ContainerId, c.req.Linux)
			return changed
		},
		after: func(ctx context.Context, c *updateCall, _ *runtimeapi.UpdateContainerResourcesResponse) error {
			f.engine.Updated(ctx, c.req.ContainerId, c.event)
			return nil
		},
	})
}
