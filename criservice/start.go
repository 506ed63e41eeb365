package criservice

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/policy"
)

type startCall = call[*runtimeapi.StartContainerRequest]

// startContainer writes the container's limits into its cgroup before the runtime
// starts the process (a cgroupfs path, and v1 pids.max), then reads them back after
// the reply and repairs what is missing: one lookup, one decision and, where the
// cgroup exists before start, one plan for both.
func (s *Service) startContainer() Hook {
	return intercept(s, handler[*runtimeapi.StartContainerRequest, *runtimeapi.StartContainerResponse]{
		method: "StartContainer",
		newReq: func() *runtimeapi.StartContainerRequest { return new(runtimeapi.StartContainerRequest) },
		before: s.beforeStart,
		after: func(ctx context.Context, c *startCall, _ *runtimeapi.StartContainerResponse) error {
			return s.afterStart(ctx, c)
		},
	})
}

// beforeStart never fails the call: what it cannot put in place is applied after
// the reply, or fails the call there when fail-closed.
func (s *Service) beforeStart(ctx context.Context, c *startCall) bool {
	id := c.req.ContainerId
	t, err := s.containerTarget(ctx, id)
	if err != nil {
		s.log.Debug("limits not in place before start; applied after it", "container", id, "err", err)
		return false
	}
	c.target = &t
	if s.opts.DryRun {
		return false
	}
	if s.wantsOwnLimits(t.Decision) {
		plan, err := s.planContainer(ctx, &t, planOptions{create: true, starting: true})
		if err == nil {
			_, _, err = s.enforcer.apply(plan, "container", id)
			c.plan, c.planned = plan, err == nil && plan.Unresolved == nil
		}
		if err != nil {
			s.log.Debug("limits not in place before start; applied after it", "container", id, "err", err)
		}
	}
	if s.opts.IO.Version() != 2 {
		if err := s.enforcePidsV1(ctx, &t, true); err != nil {
			s.log.Debug("pids.max not in place before start; written after it", "container", id, "err", err)
		}
	}
	return false
}

func (s *Service) afterStart(ctx context.Context, c *startCall) error {
	id := c.req.ContainerId
	start := time.Now()
	if c.target == nil { // Before could not look it up: once more now
		if t, err := s.containerTarget(ctx, id); err == nil {
			c.target = &t
		}
	}
	var plan Plan
	var err error
	if c.planned {
		plan, _, err = s.applyPlan(ctx, c.plan) // read back what was written before start
	} else {
		plan, _, err = s.applyContainer(ctx, id, c.target)
	}
	if err == nil && plan.Decision.Scope == policy.ScopePod && !s.splitPodBudget && (s.opts.FailClosed || hasSelectors(plan.Decision.IO)) {
		// The container's limits are its pod's: they must be in place too. A budget on
		// volumes takes this container's volumes in now.
		err = s.podBudgetInPlace(ctx, plan.PodID)
	}
	took := time.Since(start)
	if s.metrics != nil {
		s.metrics.applyLatency.Observe(took.Seconds())
	}
	s.log.Debug("start handled", "container", id, "apply_seconds", took.Seconds(), "err", err)
	if err != nil {
		s.failed("container", id, err)
		if s.opts.FailClosed {
			return s.failClosed(ctx, id, err)
		}
	} else if plan.Decision.Scope == policy.ScopePod {
		s.reshare(ctx, plan.PodID, id)
	}
	if !s.opts.DryRun && c.target != nil {
		s.resourcesAfterStart(ctx, c.target)
	}
	return nil
}

// failClosed stops a container whose throttle is not in place: with --fail-closed it
// must not run unthrottled.
func (s *Service) failClosed(ctx context.Context, id string, err error) error {
	ctx, cancel := s.detached(ctx) // a budget of its own, whatever the apply used
	defer cancel()
	if _, stopErr := s.opts.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); stopErr != nil {
		s.log.Error("fail-closed: cannot stop unthrottled container", "container", id, "err", stopErr)
	}
	return status.Errorf(codes.FailedPrecondition, "criguard: throttle for container %s not applied (--fail-closed): %v", id, err)
}

// podBudgetInPlace brings the pod's cgroup to its budget and reports whether it holds.
func (s *Service) podBudgetInPlace(ctx context.Context, podID string) error {
	pod, err := s.lookupPod(ctx, podID)
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
	return d.Scope != policy.ScopePod || s.splitPodBudget
}
