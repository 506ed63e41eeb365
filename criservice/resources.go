package criservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
type ControllerMounts interface {
	ControllerMount(controller string) (string, bool)
}

type beforeFunc = func(ctx context.Context, req []byte) ([]byte, error)
type afterFunc = func(ctx context.Context, req, resp []byte, err error) error

// chainBefore runs request rewrites in turn, each on the previous one's output.
func chainBefore(rewrites ...beforeFunc) beforeFunc {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		for _, rewrite := range rewrites {
			out, err := rewrite(ctx, req)
			if err != nil {
				return nil, err
			}
			if out != nil {
				req = out
			}
		}
		return req, nil
	}
}

// chainAfter runs then only when first let the call succeed.
func chainAfter(first, then afterFunc) afterFunc {
	return func(ctx context.Context, req, resp []byte, err error) error {
		if err = first(ctx, req, resp, err); err != nil {
			return err
		}
		return then(ctx, req, resp, nil)
	}
}

// wantedResources is what the policy gives a container beyond I/O.
func (s *Service) wantedResources(w policy.Workload) policy.Resources {
	d := s.opts.Policy().Decide(w)
	if d.HandsOff {
		return policy.Resources{}
	}
	return d.Resources
}

// tightenCreate makes a CreateContainer config's resources at least as strict as the
// policy's, and reports whether it changed them.
func (s *Service) tightenCreate(cfg *runtimeapi.ContainerConfig, pod podInfo, ct containerInfo) bool {
	want := s.wantedResources(workload(pod, &ct))
	if want.IsZero() {
		return false
	}
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if cfg.Linux.Resources == nil {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{}
	}
	return s.tightenResources(cfg.Linux.Resources, want, "CreateContainer", pod.Namespace+"/"+pod.Name, ct.Name)
}

// tightenUpdate keeps kubelet's own updates (resizes, restarts of the kubelet) from
// loosening what the policy tightened, and reports whether it changed res.
func (s *Service) tightenUpdate(res *runtimeapi.LinuxContainerResources, pod podInfo, ct containerInfo) bool {
	want := s.wantedResources(workload(pod, &ct))
	return !want.IsZero() && s.tightenResources(res, want, "UpdateContainerResources", pod.Namespace+"/"+pod.Name, ct.Name)
}

// tightenResources rewrites res in place and reports whether it changed.
func (s *Service) tightenResources(res *runtimeapi.LinuxContainerResources, want policy.Resources, method, pod, name string) bool {
	cr := translate.ContainerResources{CPUShares: res.CpuShares, CPUQuota: res.CpuQuota, CPUPeriod: res.CpuPeriod,
		MemoryLimit: res.MemoryLimitInBytes, Unified: maps.Clone(res.Unified)} // a dry run leaves res as it was
	t := translate.TightenResources(&cr, want, s.opts.IO.Version())
	for _, why := range t.Unenforceable {
		s.log.Warn("throttle not enforceable on this host", "pod", pod, "name", name, "why", why)
	}
	if len(t.Changed) == 0 {
		return false
	}
	if s.opts.DryRun {
		s.log.Info("dry run: would tighten resources", "method", method, "pod", pod, "name", name, "changes", t.Changed)
		return false
	}
	res.CpuShares, res.CpuQuota, res.CpuPeriod, res.Unified = cr.CPUShares, cr.CPUQuota, cr.CPUPeriod, cr.Unified
	s.log.Info("resources tightened", "method", method, "pod", pod, "name", name, "changes", t.Changed)
	return true
}

// pidsBeforeStart writes a v1 container's pids.max before the runtime starts it,
// making its cgroupfs directory as the I/O limits do: runc joins it as it is.
func (s *Service) pidsBeforeStart(ctx context.Context, reqB []byte) ([]byte, error) {
	var req runtimeapi.StartContainerRequest
	if s.opts.IO.Version() == 2 || s.opts.DryRun || !s.decode("StartContainer", reqB, &req) {
		return reqB, nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if err := s.enforcePidsV1(ctx, req.ContainerId, true); err != nil {
		s.log.Debug("pids.max not in place before start; written after it", "container", req.ContainerId, "err", err)
	}
	return reqB, nil
}

// resourcesAfterStart writes a v1 container's pids.max if its cgroup was not there
// before start, then reads back what landed of its pids, memory and cpu.
func (s *Service) resourcesAfterStart(ctx context.Context, reqB, _ []byte, _ error) error {
	var req runtimeapi.StartContainerRequest
	if s.opts.DryRun || !s.decode("StartContainer", reqB, &req) {
		return nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if s.opts.IO.Version() != 2 {
		if err := s.enforcePidsV1(ctx, req.ContainerId, false); err != nil {
			s.failed("container", req.ContainerId, s.tornDown(ctx, "container", req.ContainerId, err))
		}
	}
	s.confirmResources(ctx, req.ContainerId)
	return nil
}

// confirmResources logs any setting the runtime did not put in place as asked: the
// read-back after start. What the host cannot enforce was logged at create.
func (s *Service) confirmResources(ctx context.Context, id string) {
	ct, pod, err := s.lookup(ctx, id)
	if err != nil || ct.Dir == "" {
		return
	}
	plan := Plan{ContainerID: id, PodID: ct.PodID, CgroupsPath: ct.CgroupsPath, Dir: ct.Dir,
		Decision: s.opts.Policy().Decide(workload(pod, &ct))}
	for _, st := range s.resourceStates(plan) {
		if st.InSync || st.unenforceable() {
			continue
		}
		s.log.Warn("resource not in force after start", "container", id, "pod", pod.Namespace+"/"+pod.Name,
			"file", st.File, "want", st.Want, "have", st.Have, "err", st.Note)
	}
}

// reconcileResources repairs what criguard writes itself beyond I/O: v1 pids.max.
// Everything else travels in the CRI request, where kubelet's updates keep it.
func (s *Service) reconcileResources(ctx context.Context, id string) {
	if s.opts.IO.Version() == 2 || s.opts.DryRun {
		return
	}
	if err := s.enforcePidsV1(ctx, id, false); err != nil {
		s.failed("container", id, s.tornDown(ctx, "container", id, err))
	}
}

// enforcePidsV1 brings the container's v1 pids.max to the policy's, never above a
// value already there (kubelet's or another tool's).
func (s *Service) enforcePidsV1(ctx context.Context, id string, create bool) error {
	ct, pod, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	want := s.wantedResources(workload(pod, &ct)).PidsMax
	if want == 0 {
		return nil
	}
	raw := ct.CgroupsPath
	if raw == "" {
		if raw, err = s.opts.Resolver.CgroupsPath(ctx, id); err != nil {
			return err
		}
	}
	mount, dir, err := s.v1Dir("pids", raw)
	if err == nil && create && isCgroupfsPath(raw) {
		err = makeCgroupUnder(mount, dir)
	}
	if err == nil {
		err = cgroup.CheckDir(mount, dir)
	}
	if err != nil {
		return fmt.Errorf("container %s: pids.max: %w", id, err)
	}
	if have, err := cgroup.ReadFile(dir, "pids.max"); err == nil {
		if n, ok := limitValue(have); ok && n <= want {
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

// makeCgroupUnder creates a cgroupfs directory whose parent exists under mount.
func makeCgroupUnder(mount, dir string) error {
	if err := cgroup.CheckDir(mount, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	return nil
}

// limitValue reads a cgroup limit file: a number, or "max" (unlimited: not ok).
func limitValue(s string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	return n, err == nil
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
		n, ok := limitValue(st.Have)
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
			limit, _ := limitValue(limitText)
			high := translate.MemoryHigh(want, int64(min(limit, 1<<62)))
			if high == 0 {
				st.Want, st.Note = memoryHighWanted(want), "not enforced: the container has no memory limit to take a share of"
				break
			}
			st.Want = strconv.FormatUint(high, 10)
			st.Have, st.Note = read("", "memory.high")
			n, ok := limitValue(st.Have)
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
