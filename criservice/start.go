package criservice

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/policy"
)

type startCall = call[*runtimeapi.StartContainerRequest, *Start]

// startContainer writes the container's limits into its cgroup before the runtime
// starts the process (a cgroupfs path, and v1 pids.max), then reads them back after
// the reply and repairs what is missing: one lookup, one decision and, where the
// cgroup exists before start, one plan for both (Starting, Started).
func (f *criFront) startContainer() Hook {
	return intercept(f, handler[*runtimeapi.StartContainerRequest, *runtimeapi.StartContainerResponse, *Start]{
		method: "StartContainer",
		newReq: func() *runtimeapi.StartContainerRequest { return new(runtimeapi.StartContainerRequest) },
		before: func(ctx context.Context, c *startCall) bool {
			c.event = f.engine.Starting(ctx, c.req.ContainerId)
			return false
		},
		after: func(ctx context.Context, c *startCall, _ *runtimeapi.StartContainerResponse) error {
			return f.engine.Started(ctx, c.req.ContainerId, c.event)
		},
		refused: func(c *startCall) { f.engine.StartRefused(c.event) },
	})
}

// failClosed stops a container whose throttle is not in place: with --fail-closed it
// must not run unthrottled.
func (s *Service) failClosed(ctx context.Context, id string, err error) error {
	ctx, cancel := s.detached(ctx) // a budget of its own, whatever the apply used
	defer cancel()
	if _, stopErr := s.store.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); stopErr != nil {
		s.log.Error("fail-closed: cannot stop unthrottled container", "container", id, "err", stopErr)
	}
	return status.Errorf(codes.FailedPrecondition, "criguard: throttle for container %s not applied (--fail-closed): %v", id, err)
}

// podBudgetInPlace brings the pod's cgroup to its budget and reports whether it holds.
func (s *Service) podBudgetInPlace(ctx context.Context, podID string) error {
	pod, err := s.store.lookupPod(ctx, podID)
	if err != nil {
		return err
	}
	_, _, err = s.ApplyPod(ctx, pod)
	return err
}

// wantsOwnLimits reports whether a decision gives the container limits in its own
// cgroup (a pod budget on v2 lives in the pod's).
func (s *Service) wantsOwnLimits(d policy.Decision) bool {
	if d.HandsOff || len(d.IO) == 0 {
		return false
	}
	return d.Scope != policy.ScopePod || s.planner.splitPodBudget
}
