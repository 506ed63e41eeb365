package criservice

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// stopContainer gives a stopped container's share of a v1 pod budget back to the
// pod's other containers.
func (s *Service) stopContainer() Hook {
	if !s.planner.splitPodBudget {
		return Hook{}
	}
	return intercept(s, handler[*runtimeapi.StopContainerRequest, *runtimeapi.StopContainerResponse, struct{}]{
		method: "StopContainer",
		newReq: func() *runtimeapi.StopContainerRequest { return new(runtimeapi.StopContainerRequest) },
		after: func(ctx context.Context, c *call[*runtimeapi.StopContainerRequest, struct{}], _ *runtimeapi.StopContainerResponse) error {
			s.Stopped(ctx, c.req.ContainerId)
			return nil
		},
	})
}

// removeContainer forgets a container.
func (s *Service) removeContainer() Hook {
	return intercept(s, handler[*runtimeapi.RemoveContainerRequest, *runtimeapi.RemoveContainerResponse, struct{}]{
		method: "RemoveContainer",
		newReq: func() *runtimeapi.RemoveContainerRequest { return new(runtimeapi.RemoveContainerRequest) },
		after: func(_ context.Context, c *call[*runtimeapi.RemoveContainerRequest, struct{}], _ *runtimeapi.RemoveContainerResponse) error {
			s.Removed(c.req.ContainerId)
			return nil
		},
	})
}

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
