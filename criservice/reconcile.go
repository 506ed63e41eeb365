package criservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReconcileResult counts what one pass did.
type ReconcileResult struct {
	Pods, Containers int // running objects checked
	Fixed            int // cgroups whose limits were changed or reset
	Failed           int // cgroups that could not be checked or fixed
	Elapsed          time.Duration
}

// Reconcile lists what runs, compares every pod's and container's cgroup with
// the policy and fixes the difference. It refreshes the metadata cache from
// the lists, so a restart of criguard loses nothing.
func (s *Service) Reconcile(ctx context.Context) (ReconcileResult, error) {
	start := time.Now()
	var res ReconcileResult
	pods, err := s.opts.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		s.metrics.reconcileRun("error", 0)
		return res, fmt.Errorf("reconcile: list pods: %w", err)
	}
	containers, err := s.opts.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
	})
	if err != nil {
		s.metrics.reconcileRun("error", 0)
		return res, fmt.Errorf("reconcile: list containers: %w", err)
	}
	livePods := make(map[string]bool, len(pods.Items))
	for _, p := range pods.Items {
		livePods[p.Id] = true
		pod := podFromCRI(p)
		if cached, ok := s.cache.pod(p.Id); ok {
			pod.CgroupParent = cached.CgroupParent
		} else {
			s.fillCgroupParent(ctx, &pod)
		}
		s.cache.putPod(pod)
		res.Pods++
		_, result, err := s.ApplyPod(ctx, pod)
		s.count(&res, "pod", pod.ID, result, err)
	}
	liveContainers := make(map[string]bool, len(containers.Containers))
	for _, c := range containers.Containers {
		liveContainers[c.Id] = true
		s.cache.putContainer(containerFromCRI(c))
		res.Containers++
		_, result, err := s.ApplyContainer(ctx, c.Id)
		s.count(&res, "container", c.Id, result, err)
	}
	// Stopped containers and pods stay listable until removed; keep their
	// metadata only while the runtime still has them running or ready.
	s.cache.retain(livePods, liveContainers)
	res.Elapsed = time.Since(start)
	if s.metrics != nil {
		s.metrics.drift.Add(float64(res.Fixed))
		np, nc := s.cache.size()
		s.metrics.cachedEntities.WithLabelValues("pod").Set(float64(np))
		s.metrics.cachedEntities.WithLabelValues("container").Set(float64(nc))
	}
	s.metrics.reconcileRun("ok", res.Elapsed)
	return res, nil
}

func (s *Service) count(res *ReconcileResult, scope, id string, result syncResult, err error) {
	switch {
	case errors.Is(err, ErrUnknownContainer):
		// Gone between the list and the check: nothing to fix.
	case err != nil:
		res.Failed++
		s.failed(scope, id, err)
	case result != resultUnchanged:
		res.Fixed++
	}
}

func (m *Metrics) reconcileRun(result string, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.reconciles.WithLabelValues(result).Inc()
	if result == "ok" {
		m.reconcileTime.Observe(elapsed.Seconds())
	}
}

// RunReconciler reconciles at start, on every trigger (a policy reload) and
// every interval, until ctx ends. Triggers that arrive during a pass are
// folded into one more pass.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration, trigger <-chan struct{}) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		res, err := s.Reconcile(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("reconcile failed; will retry", "err", err)
		} else if res.Fixed > 0 || res.Failed > 0 {
			s.log.Info("reconciled", "pods", res.Pods, "containers", res.Containers, "fixed", res.Fixed, "failed", res.Failed, "took", res.Elapsed)
		} else {
			s.log.Debug("reconciled", "pods", res.Pods, "containers", res.Containers, "took", res.Elapsed)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-trigger:
		}
	}
}

// PolicyChanged drops what depended on the old policy (resolved devices).
func (s *Service) PolicyChanged() { s.forgetDevices() }
