package criservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// Reporter answers what operators ask, from the cgroup files as they are now:
// explain, status, top's samples and the per-workload metrics. It plans with the
// daemon's planner and compares with the enforcer's record; it writes nothing.
type Reporter struct {
	store    *store
	planner  *planner
	enforcer *enforcer
	io       cgroup.IO
	settings cgroup.Settings
	stateDir string
	log      *slog.Logger
}

// Explanation is everything criguard decides about one container or pod and
// why, for `criguard explain`.
type Explanation struct {
	Kind        string          `json:"kind"` // container or pod
	ID          string          `json:"id"`
	PodID       string          `json:"podId"`
	Workload    policy.Workload `json:"workload"`
	Decision    policy.Decision `json:"decision"`
	Resolver    string          `json:"resolver"`
	CgroupsPath string          `json:"cgroupsPath"`
	Dir         string          `json:"cgroupDir"`
	IOVersion   int             `json:"cgroupIOVersion"`
	// Limits are what the cgroup at Dir must hold; Writes make them true;
	// Pending are the writes still needed, given what Current holds.
	Limits []cgroup.IOLimit `json:"limits"`
	// ClassLimits are the class's limits: Limits differ where the burst or the
	// protection loop holds a limit in force; InForceNotes say why, key by key.
	ClassLimits  []cgroup.IOLimit `json:"classLimits,omitempty"`
	InForceNotes []string         `json:"inForceNotes,omitempty"`
	Writes       []cgroup.Write   `json:"writes"`
	Current      []cgroup.IOLimit `json:"current"`
	Pending      []cgroup.Write   `json:"pending"`
	// Foreign are limits in Current that criguard did not write: it leaves them alone.
	Foreign []cgroup.IOLimit `json:"foreign,omitempty"`
	// RecordMissing says where the record of criguard's limits was looked for and
	// not found: then which limits are criguard's is unknown, and none is foreign.
	RecordMissing string `json:"recordMissing,omitempty"`
	// Mounts are the volumes and writable layers the decision's selectors found,
	// each with its device chain, or why it gets no limit.
	Mounts []MountDisk `json:"mounts,omitempty"`
	// Resources are the container's pids, memory and cpu throttles, read back.
	Resources []ResourceState `json:"resources,omitempty"`
	// Weights are the cgroup's per-device weights, whether the kernel enforces them
	// there, and the sibling set they compete in.
	Weights []WeightState `json:"weights,omitempty"`
	// Pod is the pod's own plan when the decision is a pod-scope budget.
	Pod   *Explanation `json:"pod,omitempty"`
	Notes []string     `json:"notes"`
	Error string       `json:"error,omitempty"`
}

// Explain tells what applies to a container or pod id and why. Errors in
// resolving the cgroup are part of the answer, not a failure to answer.
func (s *Reporter) Explain(ctx context.Context, id string) (Explanation, error) {
	plan, err := s.planner.planContainerID(ctx, id)
	if errors.Is(err, ErrUnknownContainer) && plan.PodID == "" {
		pod, podErr := s.store.lookupPod(ctx, id)
		if podErr != nil {
			return Explanation{}, fmt.Errorf("%q is neither a container nor a pod the runtime knows: %w", id, err)
		}
		plan, err = s.planner.planPod(ctx, pod)
		return s.explanation("pod", plan, err), nil
	}
	ex := s.explanation("container", plan, err)
	if plan.Decision.Scope == policy.ScopePod && plan.PodID != "" {
		if pod, podErr := s.store.lookupPod(ctx, plan.PodID); podErr == nil {
			podPlan, podErr := s.planner.planPod(ctx, pod)
			podEx := s.explanation("pod", podPlan, podErr)
			ex.Pod = &podEx
		}
	}
	if missing := s.recordMissing(); missing != "" {
		for e := &ex; e != nil; e = e.Pod {
			e.Foreign, e.RecordMissing = nil, missing
		}
	}
	return ex, nil
}

// recordMissing says where the ownership record was looked for when there is no
// file to read (status and explain run on another state dir than the daemon's, or
// before it wrote anything): "" when it is there, or kept in memory only (no state
// dir), where it holds what this process wrote.
func (s *Reporter) recordMissing() string {
	if s.enforcer.owned.path == "" {
		return ""
	}
	if _, err := os.Stat(s.enforcer.owned.path); err != nil {
		return fmt.Sprintf("no record of the limits criguard wrote at %s (%v); give the daemon's --state-dir", s.enforcer.owned.path, err)
	}
	return ""
}

func (s *Reporter) explanation(kind string, plan Plan, err error) Explanation {
	id := plan.ContainerID
	if kind == "pod" {
		id = plan.PodID
	}
	ex := Explanation{Kind: kind, ID: id, PodID: plan.PodID, Workload: plan.Workload, Decision: plan.Decision,
		Resolver: s.store.resolver.Name(), CgroupsPath: plan.CgroupsPath, Dir: plan.Dir,
		IOVersion: s.io.Version(), Limits: plan.Limits, ClassLimits: plan.ClassLimits, Mounts: plan.Mounts}
	if err != nil {
		ex.Error = err.Error()
	}
	if plan.Unresolved != nil {
		ex.Notes = append(ex.Notes, "not applied, retried by the reconcile loop: "+plan.Unresolved.Error())
	}
	if plan.Decision.HandsOff {
		ex.Notes = append(ex.Notes, "hands off: criguard writes nothing to this cgroup and resets nothing")
	}
	ex.Notes = append(ex.Notes, plan.Conflicts...)
	ex.Notes = append(ex.Notes, handoverNotes(plan)...)
	if len(plan.Limits) > 0 {
		ex.Writes = s.io.Writes(plan.Limits)
	}
	if plan.Dir != "" {
		current, readErr := s.io.Limits(plan.Dir)
		if readErr != nil && ex.Error == "" {
			ex.Error = readErr.Error()
		}
		ex.Current = current
		if readErr == nil {
			ex.InForceNotes = s.inForceNotes(plan, current)
			ex.Pending = s.enforcer.pending(plan, current)
			ex.Foreign = translate.Foreign(current, s.enforcer.owned.get(plan.Dir))
		}
	}
	switch {
	case plan.Decision.Scope != policy.ScopePod || len(plan.Decision.IO) == 0:
	case s.planner.splitPodBudget && kind == "container":
		ex.Notes = append(ex.Notes, fmt.Sprintf("pod-scope budget on cgroup v1, where blkio throttles are not hierarchical: split evenly among the pod's %d running container(s); an idle container's share is not lent to the others", plan.PodShare))
	case s.planner.splitPodBudget:
		ex.Notes = append(ex.Notes, "pod-scope budget on cgroup v1: nothing is written to the pod's cgroup (a v1 limit there binds no container); each running container gets an equal share")
	case kind == "container":
		ex.Notes = append(ex.Notes, "pod-scope budget: the limits are on the pod's cgroup, shared by its containers")
	}
	s.explainResources(&ex, plan)
	s.explainWeights(&ex, plan)
	if !cgroup.ThrottlesBufferedWrites(s.io) && len(plan.Limits) > 0 {
		ex.Notes = append(ex.Notes, "cgroup v1: blkio throttles direct I/O only; buffered writes that go through the page cache are not limited")
	}
	return ex
}

// Report is one row of `criguard status`: a running container, or a pod with
// a pod-scope budget, with what its cgroup files hold right now.
type Report struct {
	Kind      string           `json:"kind"`
	ID        string           `json:"id"`
	Namespace string           `json:"namespace"`
	Pod       string           `json:"pod"`
	Container string           `json:"container,omitempty"`
	Source    policy.Source    `json:"source"`
	Reason    string           `json:"reason"`
	Dir       string           `json:"cgroupDir"`
	Want      []cgroup.IOLimit `json:"want"`
	// Class is the class's limits where Want, with the loops' limits in force, differs.
	Class        []cgroup.IOLimit `json:"class,omitempty"`
	InForceNotes []string         `json:"inForceNotes,omitempty"`
	// Weights are the cgroup's per-device weights and whether they are enforced.
	Weights []WeightState    `json:"weights,omitempty"`
	Have    []cgroup.IOLimit `json:"have"`
	Foreign []cgroup.IOLimit `json:"foreign,omitempty"`
	// RecordMissing is Explanation.RecordMissing.
	RecordMissing string          `json:"recordMissing,omitempty"`
	Conflicts     []string        `json:"conflicts,omitempty"`
	Usage         []cgroup.IOStat `json:"usage"`
	Resources     []ResourceState `json:"resources,omitempty"`
	Match         bool            `json:"match"`
	Error         string          `json:"error,omitempty"`
}

// Status reads back every running container's (and pod budget's) limits and
// usage from the cgroup files, and says whether they match the policy.
func (s *Reporter) Status(ctx context.Context) ([]Report, error) {
	pods, containers, _, err := s.store.listRunning(ctx)
	if err != nil {
		return nil, err
	}
	var reports []Report
	// A container or pod that stopped since the listing, its cgroup gone, gets no row.
	add := func(scope, id string, r Report, err error) {
		if !vanished(s.store.tornDown(ctx, scope, id, err)) {
			reports = append(reports, r)
		}
	}
	for _, pod := range pods {
		plan, err := s.planner.planPod(ctx, pod)
		if err == nil && len(plan.Limits) == 0 && !s.hasLimits(plan.Dir) {
			continue // no budget wanted, none there: not worth a row
		}
		r, err := s.report("pod", plan, err)
		add("pod", pod.ID, r, err)
	}
	for _, id := range containers {
		plan, err := s.planner.planContainerID(ctx, id)
		r, err := s.report("container", plan, err)
		add("container", id, r, err)
	}
	if missing := s.recordMissing(); missing != "" {
		for i := range reports {
			reports[i].Foreign, reports[i].RecordMissing = nil, missing
		}
	}
	return reports, nil
}

func (s *Reporter) hasLimits(dir string) bool {
	if dir == "" {
		return false
	}
	have, err := s.io.Limits(dir)
	return err == nil && len(have) > 0
}

// report reads a plan back into a row; the error, if any, is also the row's Error.
func (s *Reporter) report(kind string, plan Plan, err error) (Report, error) {
	r := Report{Kind: kind, ID: plan.ContainerID, Namespace: plan.Workload.Namespace, Pod: plan.Workload.PodName,
		Container: plan.Workload.ContainerName, Source: plan.Decision.Source, Reason: plan.Decision.Reason,
		Dir: plan.Dir, Want: plan.Limits}
	if kind == "pod" {
		r.ID = plan.PodID
	}
	if err != nil {
		r.Error = err.Error()
		return r, err
	}
	if plan.Unresolved != nil {
		r.Error = plan.Unresolved.Error()
	}
	r.Conflicts = plan.Conflicts
	if plan.Dir == "" {
		r.Match = len(plan.Limits) == 0
		return r, nil
	}
	if r.Have, err = s.io.Limits(plan.Dir); err != nil {
		r.Error = err.Error()
		return r, err
	}
	r.Usage, _ = s.io.Stats(plan.Dir)
	if !slices.Equal(plan.ClassLimits, plan.Limits) || !slices.Equal(plan.ClassLimits, r.Have) {
		r.Class = plan.ClassLimits
	}
	r.InForceNotes = s.inForceNotes(plan, r.Have)
	r.Weights = s.weightStates(plan)
	r.Match = len(s.enforcer.pending(plan, r.Have)) == 0
	r.Resources = resourceStates(s.settings, plan)
	for _, st := range r.Resources {
		r.Match = r.Match && (st.InSync || st.unenforceable())
	}
	r.Foreign = translate.Foreign(r.Have, s.enforcer.owned.get(plan.Dir))
	return r, nil
}
