package criservice

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// The engine's events. A front end (this package's CRI handlers, or an NRI plugin)
// turns what it sees into Pod and Container values and tells the engine what
// happens to them. Each container event gets one policy decision, which the
// event's two halves share. Nothing here reads CRI bytes; runtimeapi's
// LinuxContainerResources is only the shape of the resources a runtime writes.

// PodStarted learns a new pod and puts its pod-scope budget on its cgroup.
func (s *Service) PodStarted(ctx context.Context, pod Pod) {
	s.store.putPod(pod)
	if _, _, err := s.ApplyPod(ctx, pod); err != nil {
		s.failed("pod", pod.ID, err)
	}
}

// PodRemoved forgets a pod.
func (s *Service) PodRemoved(id string) {
	pod, _ := s.store.pod(id)
	s.store.forgetPod(id)
	if pod.CgroupParent == "" {
		return
	}
	if dir, err := translate.PodCgroupDir(s.opts.IO.Mount(), pod.CgroupParent); err == nil {
		s.planner.forget("", dir)
		s.enforcer.forgetCgroup(dir)
	}
}

// Creating decides on a container about to be created and makes res, the resources
// the runtime writes before the process exists, at least as strict as the policy:
// on cgroup v2 its io.max in unified, and pids, memory and cpu. It reports whether
// it changed res. ct has no ID yet.
func (s *Service) Creating(ctx context.Context, pod Pod, ct Container, res *runtimeapi.LinuxContainerResources) bool {
	return s.tightenForRuntime(ctx, res, s.planner.decideFor(pod, ct), "CreateContainer")
}

// Created learns a container the runtime made (ct.ID set) and, when pod.ID is
// set, its pod if not known yet. Its cgroup is learned here, so that the start
// only writes files before the process runs; unknown yet is fine: the start asks.
func (s *Service) Created(ctx context.Context, pod Pod, ct Container) {
	if _, known := s.store.pod(pod.ID); !known && pod.ID != "" {
		s.store.putPod(pod)
	}
	s.store.putContainer(ct)
	_, _ = s.store.cgroupsPath(ctx, &ct)
}

// Start is a container start under way: the decision made before the runtime
// starts it, and the plan already written, for the work after.
type Start struct {
	id      string
	target  *target // nil: the lookup failed before the start
	plan    Plan
	planned bool   // plan was written before the start
	dropIn  string // the scope whose pre-start drop-in holds plan (dropin.go)
}

// Starting writes the container's limits into its cgroup before the runtime starts
// the process, where the cgroup exists already (a cgroupfs path; v1 pids.max). It
// never fails: what it cannot put in place now, Started applies.
func (s *Service) Starting(ctx context.Context, id string) *Start {
	st := &Start{id: id}
	t, err := s.planner.containerTarget(ctx, id)
	if err != nil {
		s.log.Debug("limits not in place before start; applied after it", "container", id, "err", err)
		return st
	}
	st.target = &t
	if s.opts.DryRun {
		return st
	}
	if s.wantsOwnLimits(t.Decision) {
		plan, err := s.planner.planContainer(ctx, &t, planOptions{create: true, starting: true})
		if err == nil {
			if unit := s.planner.preStart.unitFor(plan); unit != "" {
				// The scope does not exist yet: systemd makes it with the limits.
				err = s.planner.preStart.write(unit, plan.Limits)
				if err == nil {
					st.dropIn = unit
				}
			} else {
				_, _, err = s.enforcer.apply(plan, "container", id)
				st.plan, st.planned = plan, err == nil && plan.Unresolved == nil
			}
		}
		if err != nil {
			s.log.Debug("limits not in place before start; applied after it", "container", id, "err", err)
		}
	}
	if err := s.enforcePidsFile(ctx, &t, true); err != nil {
		s.log.Debug("pids.max not in place before start; written after it", "container", id, "err", err)
	}
	return st
}

// Started reads back what Starting wrote and repairs it, or applies the container's
// limits now (v2 + systemd: the scope exists only after the start), from the same
// decision. Its error is not nil only with fail-closed, after the container was
// stopped: the front end reports it.
func (s *Service) Started(ctx context.Context, id string, st *Start) error {
	if st == nil {
		st = &Start{id: id}
	}
	start := time.Now()
	// Before the read-back: the check for units' own properties must not take
	// criguard's drop-in for an operator's.
	s.releaseDropIn(st)
	if st.target == nil { // Starting could not look it up (or did not run): once more now
		if t, err := s.planner.containerTarget(ctx, id); err == nil {
			st.target = &t
		}
	}
	if st.target != nil {
		// Running from here for its pod's v1 share, whatever the runtime lists yet.
		defer s.store.markStarting(id, st.target.Container.PodID)()
	}
	var plan Plan
	var err error
	if st.planned {
		// The burst loop may have raised the limit in force since Starting planned.
		s.planner.burstInForce(&st.plan, false)
		plan, _, err = s.applyPlan(ctx, st.plan)
	} else {
		plan, _, err = s.applyContainer(ctx, id, st.target)
	}
	if err == nil && plan.Decision.Scope == policy.ScopePod && !s.planner.splitPodBudget && (s.opts.FailClosed || hasSelectors(plan.Decision.IO)) {
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
	if !s.opts.DryRun && st.target != nil {
		s.resourcesAfterStart(ctx, st.target)
	}
	return nil
}

// StartRefused ends a start the runtime refused: what Starting left for the scope
// that was never made goes.
func (s *Service) StartRefused(st *Start) { s.releaseDropIn(st) }

// Update is a resource update under way: the decision made for the container
// before the runtime applies it.
type Update struct {
	target *target
	// PidsMax is the policy's pids limit for the container (0: none), for a front end
	// whose runtime takes a pids field beside CRI's fields (NRI).
	PidsMax uint64
}

// Updating keeps an update of a running container's resources (res) from taking
// its limits out or loosening them, and reports whether it changed res.
func (s *Service) Updating(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) (*Update, bool) {
	t, err := s.planner.containerTarget(ctx, id)
	if err != nil {
		return &Update{}, false
	}
	u := &Update{target: &t}
	if !s.opts.DryRun {
		u.PidsMax = wantedResources(t.Decision).PidsMax
	}
	return u, s.tightenForRuntime(ctx, res, t, "UpdateContainerResources")
}

// Updated brings the container's cgroup back to its plan after the runtime
// applied an update.
func (s *Service) Updated(ctx context.Context, id string, u *Update) {
	var t *target
	if u != nil {
		t = u.target
	}
	if _, _, err := s.applyContainer(ctx, id, t); err != nil {
		s.failed("container", id, err)
	}
}

// Stopped gives a stopped container's share of a v1 pod budget back to the pod's
// other containers. From now on the container counts as stopped, whatever the
// runtime still lists.
func (s *Service) Stopped(ctx context.Context, id string) {
	s.store.markStopped(id) // the event, not the runtime's listing, which may lag
	if ct, ok := s.store.container(id); ok {
		s.reshare(ctx, ct.PodID, id)
	}
}

// Removed forgets a container.
func (s *Service) Removed(id string) {
	ct, _ := s.store.container(id)
	s.store.forgetContainer(id)
	s.planner.forget(id, ct.Dir)
	s.enforcer.forgetCgroup(ct.Dir)
}

// tightenForRuntime makes res at least as strict as t's decision (the io.max on
// v2, pids, memory and cpu) and reports whether it changed res.
func (s *Service) tightenForRuntime(ctx context.Context, res *runtimeapi.LinuxContainerResources, t target, method string) bool {
	withIOMax := s.ioMaxInto(ctx, res, t, method)
	want := wantedResources(t.Decision)
	tightened := !want.IsZero() && s.tightenResources(res, want, method, t)
	return withIOMax || tightened
}

// ioMaxInto puts the container's io.max into res's unified resources (v2), at
// least as strict as what is there, and reports whether it changed res: the
// runtime writes what a create or an update carries.
func (s *Service) ioMaxInto(ctx context.Context, res *runtimeapi.LinuxContainerResources, t target, method string) bool {
	if !s.settings.RuntimeTakesUnified() || s.opts.DryRun {
		return false
	}
	want, ok := s.wantedIOMax(ctx, t)
	return ok && s.tightenUnifiedIOMax(res, want, method, t)
}

// Observe learns pods and containers a front end was handed in a listing (NRI's
// Synchronize), with what it knows of their cgroups, and applies nothing: the
// reconcile pass that follows does, without asking the runtime for each one.
func (s *Service) Observe(pods []Pod, containers []Container) {
	for _, p := range pods {
		s.store.putPod(p)
	}
	for _, ct := range containers {
		s.store.putContainer(ct)
	}
}

// detached is the context for criguard's own work around a call: the caller's
// cancel must not cut a half-written throttle.
func (s *Service) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.opts.ApplyTimeout)
}

// failed logs and counts a throttle that could not be applied; the reconcile
// loop retries it. A container that vanished in the meantime, or was being torn
// down, is not a failure.
func (s *Service) failed(scope, id string, err error) {
	if vanished(err) {
		s.log.Info(scope+" vanished before its throttle was applied", scope, id, "why", err)
		return
	}
	s.log.Error("throttle not applied; will retry", scope, id, "err", err)
	s.metrics.throttle("failed", scope)
}
