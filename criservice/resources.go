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

// resourcesAfterStart writes a v1 container's pids.max if its cgroup was not there
// before start, then reads back what landed of its pids, memory and cpu.
func (s *Service) resourcesAfterStart(ctx context.Context, t *target) {
	if s.opts.IO.Version() != 2 {
		if err := s.enforcePidsV1(ctx, t, false); err != nil {
			s.failed("container", t.Container.ID, s.tornDown(ctx, "container", t.Container.ID, err))
		}
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
	for _, st := range s.resourceStates(plan) {
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
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	st, err := s.opts.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
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
	if _, err := s.opts.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
		s.failed("container", id, s.tornDown(ctx, "container", id, fmt.Errorf("update resources to the new policy: %w", err)))
	}
}

// reconcileResources repairs what criguard writes itself beyond I/O: v1 pids.max.
// Everything else travels in the CRI request, where kubelet's updates keep it.
func (s *Service) reconcileResources(ctx context.Context, t *target) {
	if s.opts.IO.Version() == 2 || s.opts.DryRun {
		return
	}
	if err := s.enforcePidsV1(ctx, t, false); err != nil {
		s.failed("container", t.Container.ID, s.tornDown(ctx, "container", t.Container.ID, err))
	}
}

// enforcePidsV1 brings the container's v1 pids.max to the policy's, never above a
// value already there (kubelet's or another tool's).
func (s *Service) enforcePidsV1(ctx context.Context, t *target, create bool) error {
	id, pod := t.Container.ID, t.Pod
	want := wantedResources(t.Decision).PidsMax
	if want == 0 {
		return nil
	}
	raw, err := s.cgroupsPath(ctx, &t.Container)
	if err != nil {
		return err
	}
	mount, dir, err := s.v1Dir("pids", raw)
	if err == nil && create && translate.IsCgroupfsPath(raw) {
		err = cgroup.MakeDir(mount, dir)
	}
	if err == nil {
		err = cgroup.CheckDir(mount, dir)
	}
	if err != nil {
		return fmt.Errorf("container %s: pids.max: %w", id, err)
	}
	if have, err := cgroup.ReadFile(dir, "pids.max"); err == nil {
		if n, ok := cgroup.LimitValue(have); ok && n <= want {
			return nil
		}
	}
	if err := cgroup.WriteFile(dir, "pids.max", strconv.FormatUint(want, 10)); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	s.log.Info("container pids.max applied", "container", id, "pod", pod.Namespace+"/"+pod.Name, "dir", dir, "pids_max", want)
	return nil
}

// v1Dir is a container's cgroup directory under a v1 controller's mount.
func (s *Service) v1Dir(controller, raw string) (mount, dir string, err error) {
	if s.opts.Controllers == nil {
		return "", "", fmt.Errorf("%w: %s", ErrControllerMissing, controller)
	}
	mount, ok := s.opts.Controllers.ControllerMount(controller)
	if !ok {
		return "", "", fmt.Errorf("%w: %s is not mounted", ErrControllerMissing, controller)
	}
	dir, err = translate.CgroupDir(mount, raw)
	return mount, dir, err
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
func (s *Service) resourceStates(plan Plan) []ResourceState {
	want := plan.Decision.Resources
	if plan.ContainerID == "" || plan.Decision.HandsOff || want.IsZero() {
		return nil
	}
	v2 := s.opts.IO.Version() == 2
	var out []ResourceState
	read := func(controller, file string) (string, string) {
		dir := plan.Dir
		if !v2 {
			var err error
			if _, dir, err = s.v1Dir(controller, plan.CgroupsPath); err != nil {
				return "", err.Error()
			}
		}
		if dir == "" {
			return "", "cgroup not found"
		}
		have, err := cgroup.ReadFile(dir, file)
		if err != nil {
			return "", err.Error()
		}
		return strings.TrimSpace(have), ""
	}
	atMost := func(file, controller string, value uint64) {
		st := ResourceState{File: file, Want: strconv.FormatUint(value, 10)}
		st.Have, st.Note = read(controller, file)
		n, ok := cgroup.LimitValue(st.Have)
		st.InSync = ok && n <= value
		if st.InSync && n < value {
			st.Note = "tighter than the policy: kept, criguard only tightens"
		}
		out = append(out, st)
	}
	if want.PidsMax != 0 {
		atMost("pids.max", "pids", want.PidsMax)
	}
	if want.CPUWeight != 0 {
		if v2 {
			atMost("cpu.weight", "", want.CPUWeight)
		} else {
			atMost("cpu.shares", "cpu", translate.CPUSharesFromWeight(want.CPUWeight))
		}
	}
	if want.CPUMaxMilli != 0 {
		out = append(out, s.cpuMaxState(want.CPUMaxMilli, v2, read))
	}
	if want.MemoryHighSet() {
		st := ResourceState{File: "memory.high"}
		switch {
		case !v2:
			st.Want, st.Note = memoryHighWanted(want), "not enforced: cgroup v1 has no soft memory ceiling (memory.high is v2 only)"
		default:
			limitText, _ := read("", "memory.max")
			limit, _ := cgroup.LimitValue(limitText)
			high := translate.MemoryHigh(want, int64(min(limit, 1<<62)))
			if high == 0 {
				st.Want, st.Note = memoryHighWanted(want), "not enforced: the container has no memory limit to take a share of"
				break
			}
			st.Want = strconv.FormatUint(high, 10)
			st.Have, st.Note = read("", "memory.high")
			n, ok := cgroup.LimitValue(st.Have)
			st.InSync = ok && n <= high
		}
		out = append(out, st)
	}
	return out
}

// memoryHighWanted is the policy's memory.high as it writes it: bytes or a share.
func memoryHighWanted(want policy.Resources) string {
	if want.MemoryHighPercent != 0 {
		return fmt.Sprintf("%d%% of the memory limit", want.MemoryHighPercent)
	}
	return policy.FormatBytes(want.MemoryHigh)
}

func (s *Service) cpuMaxState(milli uint64, v2 bool, read func(controller, file string) (string, string)) ResourceState {
	st := ResourceState{File: "cpu.max", Want: policy.FormatMilliCPU(milli) + " CPU"}
	var quota, period string
	if v2 {
		st.Have, st.Note = read("", "cpu.max")
		quota, period, _ = strings.Cut(st.Have, " ")
	} else {
		st.File = "cpu.cfs_quota_us"
		quota, st.Note = read("cpu", "cpu.cfs_quota_us")
		period, _ = read("cpu", "cpu.cfs_period_us")
		st.Have = quota + "/" + period
	}
	q, qErr := strconv.ParseInt(quota, 10, 64)
	p, pErr := strconv.ParseInt(period, 10, 64)
	st.InSync = qErr == nil && pErr == nil && q > 0 && q*1000 <= int64(milli)*p
	return st
}

// ResourceSupport says what of r this host cannot enforce, and why: the check
// --host and explain answer. Nothing is dropped silently.
func ResourceSupport(r policy.Resources, h *cgroup.Hierarchy) []string {
	var problems []string
	io, err := h.IO()
	v2 := err == nil && io.Version() == 2
	need := func(what, controller string) {
		if v2 {
			if !unifiedHasController(h, controller) {
				problems = append(problems, fmt.Sprintf("%s: the %s controller is not enabled on the cgroup2 mount (cgroup.controllers)", what, controller))
			}
			return
		}
		if _, ok := h.ControllerMount(controller); !ok {
			problems = append(problems, fmt.Sprintf("%s: the v1 %s controller is not mounted", what, controller))
		}
	}
	if r.PidsMax != 0 {
		need("pids.max", "pids")
	}
	if r.CPUWeight != 0 || r.CPUMaxMilli != 0 {
		need("cpu", "cpu")
	}
	if r.MemoryHighSet() {
		if v2 {
			need("memory.high", "memory")
		} else {
			problems = append(problems, fmt.Sprintf("memory.high: cgroup %s has no soft memory ceiling (memory.high is v2 only)", h.Mode()))
		}
	}
	return problems
}

func unifiedHasController(h *cgroup.Hierarchy, controller string) bool {
	mount, ok := h.UnifiedMount()
	if !ok {
		return false
	}
	content, err := cgroup.ReadFile(mount, "cgroup.controllers")
	if err != nil {
		return false
	}
	for _, c := range strings.Fields(content) {
		if c == controller {
			return true
		}
	}
	return false
}

// explainResources adds the non-I/O throttles to an explanation.
func (s *Service) explainResources(ex *Explanation, plan Plan) {
	ex.Resources = s.resourceStates(plan)
	for _, st := range ex.Resources {
		if st.unenforceable() {
			ex.Notes = append(ex.Notes, st.File+": "+st.Note)
		}
	}
	if s.opts.IO.Version() != 2 && plan.Decision.Resources.PidsMax != 0 {
		ex.Notes = append(ex.Notes, "cgroup v1: pids.max is written to the container's pids cgroup around start (CRI has no pids field); cpu travels in the CRI request")
	}
}
