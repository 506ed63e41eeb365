package criservice

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// A class's pids, memory and cpu throttles travel in the CRI request, not behind
// kubelet's back: CreateContainer and UpdateContainerResources are tightened on
// their way to the runtime, which writes the values before the process starts, and
// kubelet's later updates pass through the same rewrite. Only v1 pids.max, which no
// CRI field carries, is written to the cgroup file, around StartContainer.

// ControllerMounts says where each v1 controller is mounted (cgroup.Hierarchy).
type ControllerMounts = cgroup.ControllerMounts

// wantedResources is what a decision gives a container beyond I/O.
func wantedResources(d policy.Decision) policy.Resources {
	if d.HandsOff {
		return policy.Resources{}
	}
	return d.Resources
}

// tightenResources rewrites res in place and reports whether it changed.
func (s *Service) tightenResources(res *runtimeapi.LinuxContainerResources, want policy.Resources, method string, t target) bool {
	pod, name := t.Pod.Namespace+"/"+t.Pod.Name, t.Container.Name
	cr := translate.ContainerResources{CPUShares: res.CpuShares, CPUQuota: res.CpuQuota, CPUPeriod: res.CpuPeriod,
		MemoryLimit: res.MemoryLimitInBytes, Unified: maps.Clone(res.Unified)} // a dry run leaves res as it was
	tt := translate.TightenResources(&cr, want, s.opts.IO.Version())
	for _, why := range tt.Unenforceable {
		s.log.Warn("throttle not enforceable on this host", "pod", pod, "name", name, "why", why)
	}
	if len(tt.Changed) == 0 {
		return false
	}
	if s.opts.DryRun {
		s.log.Info("dry run: would tighten resources", "method", method, "pod", pod, "name", name, "changes", tt.Changed)
		return false
	}
	res.CpuShares, res.CpuQuota, res.CpuPeriod, res.Unified = cr.CPUShares, cr.CPUQuota, cr.CPUPeriod, cr.Unified
	s.log.Info("resources tightened", "method", method, "pod", pod, "name", name, "changes", tt.Changed)
	return true
}

// resourcesAfterStart writes a container's pids.max if the runtime could not
// (v1) and its cgroup was not there before start, then reads back what landed of
// its pids, memory and cpu.
func (s *Service) resourcesAfterStart(ctx context.Context, t *target) {
	if err := s.enforcePidsFile(ctx, t, false); err != nil {
		s.failed("container", t.Container.ID, s.store.tornDown(ctx, "container", t.Container.ID, err))
	}
	s.confirmResources(t)
}

// confirmResources logs any setting the runtime did not put in place as asked: the
// read-back after start. What the host cannot enforce was logged at create.
func (s *Service) confirmResources(t *target) {
	ct, pod, id := t.Container, t.Pod, t.Container.ID
	if ct.Dir == "" {
		return
	}
	plan := Plan{ContainerID: id, PodID: ct.PodID, CgroupsPath: ct.CgroupsPath, Dir: ct.Dir, Decision: t.Decision}
	for _, st := range resourceStates(s.settings, plan) {
		if st.InSync || st.unenforceable() {
			continue
		}
		s.log.Warn("resource not in force after start", "container", id, "pod", pod.Namespace+"/"+pod.Name,
			"file", st.File, "want", st.Want, "have", st.Have, "err", st.Note)
	}
}

// resyncResources brings a running container's pids, memory and cpu to a policy that
// changed. They travel in the CRI request, which kubelet sends only at create and on
// its own updates: after a reload criguard asks the runtime to update the container
// from the resources it runs with (ContainerStatus), tightened. It never loosens:
// a policy that loosens them takes effect at kubelet's next update or a restart.
func (s *Service) resyncResources(ctx context.Context, t *target) {
	want := wantedResources(t.Decision)
	if want.IsZero() || s.opts.DryRun {
		return
	}
	id := t.Container.ID
	ctx, cancel := s.store.callContext(ctx)
	defer cancel()
	st, err := s.store.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		s.log.Debug("cannot read the container's resources; the new policy reaches them at kubelet's next update", "container", id, "err", err)
		return
	}
	res := st.GetStatus().GetResources().GetLinux()
	if res == nil {
		s.log.Debug("runtime reports no resources; the new policy reaches them at kubelet's next update", "container", id)
		return
	}
	res = proto.Clone(res).(*runtimeapi.LinuxContainerResources)
	if !s.tightenResources(res, want, "policy reload", *t) {
		return
	}
	s.ioMaxInto(ctx, res, *t, "policy reload") // the update carries io.max too: the policy's, not a stale one
	if _, err := s.store.runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
		s.failed("container", id, s.store.tornDown(ctx, "container", id, fmt.Errorf("update resources to the new policy: %w", err)))
	}
}

// reconcileResources repairs what criguard writes itself beyond I/O: pids.max
// where the runtime takes no unified keys (v1). Everything else travels in the CRI
// request, where kubelet's updates keep it.
func (s *Service) reconcileResources(ctx context.Context, t *target) {
	if s.opts.DryRun {
		return
	}
	if err := s.enforcePidsFile(ctx, t, false); err != nil {
		s.failed("container", t.Container.ID, s.store.tornDown(ctx, "container", t.Container.ID, err))
	}
}

// enforcePidsFile brings the container's pids.max to the policy's, never above a
// value already there (kubelet's or another tool's), where no CRI field carries it:
// the runtime takes no unified keys (v1). create makes a cgroupfs directory first.
func (s *Service) enforcePidsFile(ctx context.Context, t *target, create bool) error {
	id, pod := t.Container.ID, t.Pod
	want := wantedResources(t.Decision).PidsMax
	if want == 0 || s.settings.RuntimeTakesUnified() {
		return nil
	}
	raw, err := s.store.cgroupsPath(ctx, &t.Container)
	if err != nil {
		return err
	}
	wrote, err := s.settings.TightenPidsMax(dirUnder(raw), want, create && translate.IsCgroupfsPath(raw))
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if wrote {
		s.log.Info("container pids.max applied", "container", id, "pod", pod.Namespace+"/"+pod.Name, "pids_max", want)
	}
	return nil
}

// dirUnder is the directory of the cgroup raw under a mount.
func dirUnder(raw string) cgroup.DirOf {
	return func(mount string) (string, error) { return translate.CgroupDir(mount, raw) }
}

// ResourceState is one of a container's pids, memory or cpu settings: what the
// policy wants and what its cgroup file holds. A value at or below the one wanted
// (kubelet's own, stricter) is in sync.
type ResourceState struct {
	File   string `json:"file"`
	Want   string `json:"want"`
	Have   string `json:"have,omitempty"`
	InSync bool   `json:"inSync"`
	// Note says why it is not enforced on this host or could not be read, or that
	// a stricter value (kubelet's, the runtime's) is in force and kept.
	Note string `json:"note,omitempty"`
}

func (st ResourceState) unenforceable() bool { return strings.HasPrefix(st.Note, "not enforced") }

// resourceStates reads back a container's non-I/O settings the policy wants.
func resourceStates(settings cgroup.Settings, plan Plan) []ResourceState {
	want := plan.Decision.Resources
	if plan.ContainerID == "" || plan.Decision.HandsOff || want.IsZero() {
		return nil
	}
	var out []ResourceState
	read := func(setting cgroup.Setting) (cgroup.Reading, ResourceState) {
		st := ResourceState{File: setting.String()}
		if plan.CgroupsPath == "" {
			st.Note = "cgroup not found"
			return cgroup.Reading{}, st
		}
		r, err := settings.Read(dirUnder(plan.CgroupsPath), setting)
		st.File, st.Have = r.File, r.Text
		if err != nil {
			st.Note = err.Error()
		}
		return r, st
	}
	atMost := func(setting cgroup.Setting, value uint64) {
		r, st := read(setting)
		st.Want = strconv.FormatUint(value, 10)
		st.InSync = r.Limited && r.Value <= value
		if st.InSync && r.Value < value {
			st.Note = "tighter than the policy: kept, criguard only tightens"
		}
		out = append(out, st)
	}
	if want.PidsMax != 0 {
		atMost(cgroup.PidsMax, want.PidsMax)
	}
	if want.CPUWeight != 0 {
		atMost(cgroup.CPUWeight, settings.CPUWeightValue(want.CPUWeight))
	}
	if want.CPUMaxMilli != 0 {
		r, st := read(cgroup.CPUMax)
		st.Want = policy.FormatMilliCPU(want.CPUMaxMilli) + " CPU"
		st.InSync = r.Quota > 0 && r.Period > 0 && r.Quota*1000 <= int64(want.CPUMaxMilli)*r.Period
		out = append(out, st)
	}
	if want.MemoryHighSet() {
		out = append(out, memoryHighState(settings, want, read))
	}
	return out
}

func memoryHighState(settings cgroup.Settings, want policy.Resources, read func(cgroup.Setting) (cgroup.Reading, ResourceState)) ResourceState {
	st := ResourceState{File: cgroup.MemoryHigh.String(), Want: memoryHighWanted(want)}
	if !settings.HasSoftMemoryCeiling() {
		st.Note = "not enforced: cgroup v1 has no soft memory ceiling (memory.high is v2 only)"
		return st
	}
	limit, _ := read(cgroup.MemoryMax)
	high := translate.MemoryHigh(want, int64(min(limit.Value, 1<<62)))
	if !limit.Limited || high == 0 {
		st.Note = "not enforced: the container has no memory limit to take a share of"
		return st
	}
	r, st := read(cgroup.MemoryHigh)
	st.Want = strconv.FormatUint(high, 10)
	st.InSync = r.Limited && r.Value <= high
	return st
}

// memoryHighWanted is the policy's memory.high as it writes it: bytes or a share.
func memoryHighWanted(want policy.Resources) string {
	if want.MemoryHighPercent != 0 {
		return fmt.Sprintf("%d%% of the memory limit", want.MemoryHighPercent)
	}
	return policy.FormatBytes(want.MemoryHigh)
}

// ResourceSupport says what of r this host cannot enforce, and why: the check
// --host and explain answer. Nothing is dropped silently.
func ResourceSupport(r policy.Resources, h *cgroup.Hierarchy) []string {
	io, err := h.IO()
	if err != nil {
		return []string{err.Error()}
	}
	settings := cgroup.NewSettings(io, h)
	var problems []string
	need := func(setting cgroup.Setting, what string) {
		if err := settings.Support(setting); err != nil {
			problems = append(problems, what+": "+strings.TrimPrefix(err.Error(), cgroup.ErrNotSupported.Error()+": "))
		}
	}
	if r.PidsMax != 0 {
		need(cgroup.PidsMax, "pids.max")
	}
	if r.CPUWeight != 0 || r.CPUMaxMilli != 0 {
		need(cgroup.CPUWeight, "cpu")
	}
	if r.MemoryHighSet() {
		need(cgroup.MemoryHigh, "memory.high")
	}
	return problems
}

// explainResources adds the non-I/O throttles to an explanation.
func (s *Reporter) explainResources(ex *Explanation, plan Plan) {
	ex.Resources = resourceStates(s.settings, plan)
	for _, st := range ex.Resources {
		if st.unenforceable() {
			ex.Notes = append(ex.Notes, st.File+": "+st.Note)
		}
	}
	if !s.settings.RuntimeTakesUnified() && plan.Decision.Resources.PidsMax != 0 {
		ex.Notes = append(ex.Notes, "cgroup v1: pids.max is written to the container's pids cgroup around start (CRI has no pids field); cpu travels in the CRI request")
	}
}
