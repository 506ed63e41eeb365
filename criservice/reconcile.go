package criservice

import (
	"context"
	"fmt"
	"time"
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
// the lists, so a restart of criguard loses nothing. Every runtime call it makes
// has its own deadline.
func (s *Service) Reconcile(ctx context.Context) (ReconcileResult, error) {
	start := time.Now()
	var res ReconcileResult
	// A disk re-attached, enumerated anew after a reboot or an LV re-activated has
	// a new MAJ:MIN: each pass resolves the policy's devices again.
	s.planner.forgetDevices()
	resync := s.resourcesStale.Swap(false)
	gen := s.store.startListing()
	pods, containers, created, err := s.store.listRunning(ctx)
	if err != nil {
		s.metrics.reconcileRun("error", 0)
		return res, fmt.Errorf("reconcile: %w", err)
	}
	// Containers first: their cgroup paths tell a pod's parent when no resolver can.
	liveContainers := created
	for _, id := range containers {
		liveContainers[id] = true
		res.Containers++
		t, err := s.planner.containerTarget(ctx, id)
		var result syncResult
		if err == nil {
			if resync {
				s.resyncResources(ctx, &t) // first: the update rewrites io.max, which the apply then checks
			}
			_, result, err = s.applyContainer(ctx, id, &t)
			s.reconcileResources(ctx, &t)
		} else {
			err = s.store.tornDown(ctx, "container", id, err)
		}
		s.count(&res, "container", id, result, err)
	}
	livePods := make(map[string]bool, len(pods))
	for _, pod := range pods {
		livePods[pod.ID] = true
		res.Pods++
		_, result, err := s.ApplyPod(ctx, pod)
		s.count(&res, "pod", pod.ID, result, err)
	}
	// Stopped containers and pods stay listable until removed; keep their
	// metadata only while the runtime still has them running or ready.
	s.store.retain(gen, livePods, liveContainers)
	// And the planner's notes on containers removed behind criguard's back.
	s.planner.forgetClassLimits(liveContainers)
	if err := s.enforcer.prune(); err != nil {
		s.log.Error("cannot save the record of criguard's limits", "err", err)
	}
	res.Elapsed = time.Since(start)
	if s.metrics != nil {
		s.metrics.drift.Add(float64(res.Fixed))
		np, nc := s.store.size()
		s.metrics.cachedEntities.WithLabelValues("pod").Set(float64(np))
		s.metrics.cachedEntities.WithLabelValues("container").Set(float64(nc))
	}
	s.metrics.reconcileRun("ok", res.Elapsed)
	return res, nil
}

func (s *Service) count(res *ReconcileResult, scope, id string, result syncResult, err error) {
	switch {
	case vanished(err):
		// Gone, or going, between the list and the check: nothing to fix.
		s.log.Debug(scope+" vanished during reconcile", scope, id, "why", err)
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

// Conflicted reports whether any cgroup waits for the conflict recheck, and the
// channel that wakes the recheck when one is recorded.
func (s *Service) Conflicted() (bool, <-chan struct{}) {
	found := false
	s.conflicted.Range(func(any, any) bool { found = true; return false })
	return found, s.conflictRecorded
}

// PolicyChanged drops what depended on the old policy (resolved devices), and has
// the next pass bring running containers' pids, memory and cpu to the new one.
func (s *Service) PolicyChanged() {
	s.planner.forgetDevices()
	s.resourcesStale.Store(true)
}
