package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// stopContainer gives a stopped container's share of a v1 pod budget back to the
// pod's other containers.
func (f *criFront) stopContainer() Hook {
	if !f.engine.WantsStops() {
		return Hook{}
	}
	return intercept(f, handler[*runtimeapi.StopContainerRequest, *runtimeapi.StopContainerResponse, struct{}]{
		method: "StopContainer",
		newReq: func() *runtimeapi.StopContainerRequest { return new(runtimeapi.StopContainerRequest) },
		after: func(ctx context.Context, c *call[*runtimeapi.StopContainerRequest, struct{}], _ *runtimeapi.StopContainerResponse) error {
			f.engine.Stopped(ctx, c.req.ContainerId)
			return nil
		},
	})
}

// removeContainer forgets a container.
func (f *criFront) removeContainer() Hook {
	return intercept(f, handler[*runtimeapi.RemoveContainerRequest, *runtimeapi.RemoveContainerResponse, struct{}]{
		method: "RemoveContainer",
		newReq: func() *runtimeapi.RemoveContainerRequest { return new(runtimeapi.RemoveContainerRequest) },
		after: func(_ context.Context, c *call[*runtimeapi.RemoveContainerRequest, struct{}], _ *runtimeapi.RemoveContainerResponse) error {
			f.engine.Removed(c.req.ContainerId)
			return nil
		},
	})
}

// WantsStops reports whether Stopped acts on this host: on cgroup v1 a stopped
// container's share of a pod budget goes back to the pod's other containers.
func (s *Service) WantsStops() bool { return s.planner.splitPodBudget }

// reshare re-applies the pod's other containers when its v1 budget is split,
// since their share changes when one starts or stops. Containers without a
// pod-scope decision are unchanged by it.
func (s *Service) reshare(ctx context.Context, podID, except string) {
	if !s.planner.splitPodBudget || podID == "" {
		return
	}
	ids, err := s.store.podContainers(ctx, podID)
	if err != nil {
		s.failed("pod", podID, err)
		return
	}
	for _, id := range ids {
		if id == except {
			continue
		}
		if _, _, err := s.ApplyContainer(ctx, id); err != nil {
			s.failed("container", id, err)
		}
	}
}
