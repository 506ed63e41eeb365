package criservice

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// The throttle must be in the cgroup before the container's first instruction, not
// a few milliseconds after:
//   - cgroup v2: the limits travel in CreateContainer's linux.resources.unified
//     ["io.max"], which the OCI runtime writes before the process exists;
//   - a cgroupfs path (v1 here, or v2): the container's cgroup is made, and its
//     limits written, before StartContainer is forwarded; runc joins a directory
//     that exists, and CRI-O's exists from CreateContainer on.
// StartContainer's reply is still followed by a read-back that confirms and repairs.

const unifiedIOMax = "io.max"

// beforeCreateContainer puts the policy's io.max (v2) and its pids, memory and cpu
// settings into the request: decoded once for both, encoded again only if either
// changed it; otherwise kubelet's bytes go on as they came.
func (s *Service) beforeCreateContainer(ctx context.Context, reqB []byte) ([]byte, error) {
	var req runtimeapi.CreateContainerRequest
	if !s.decode("CreateContainer", reqB, &req) || req.Config == nil {
		return reqB, nil
	}
	pod, ct, ok := s.createTarget(&req)
	if !ok {
		return reqB, nil
	}
	withIOMax := s.ioMaxIntoCreate(ctx, req.Config, pod, ct)
	tightened := s.tightenCreate(req.Config, pod, ct)
	if !withIOMax && !tightened {
		return reqB, nil
	}
	return s.encode("CreateContainer", &req, reqB), nil
}

// ioMaxIntoCreate puts the container's io.max into the config's unified resources
// (v2), and reports whether it changed the config.
func (s *Service) ioMaxIntoCreate(ctx context.Context, cfg *runtimeapi.ContainerConfig, pod podInfo, ct containerInfo) bool {
	if s.opts.IO.Version() != 2 || s.opts.DryRun {
		return false
	}
	want, ok := s.wantedIOMax(ctx, pod, ct)
	if !ok {
		return false
	}
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if cfg.Linux.Resources == nil {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{}
	}
	return s.tightenUnifiedIOMax(cfg.Linux.Resources, want, "CreateContainer", pod, ct)
}

// createTarget is the pod and container a CreateContainer request is for, as the
// policy sees them: the pod from the cache, or from the request's sandbox config.
func (s *Service) createTarget(req *runtimeapi.CreateContainerRequest) (podInfo, containerInfo, bool) {
	pod, known := s.cache.pod(req.PodSandboxId)
	if !known {
		if req.SandboxConfig == nil {
			return podInfo{}, containerInfo{}, false
		}
		pod = podFromConfig(req.PodSandboxId, req.SandboxConfig)
	}
	cfg := req.GetConfig()
	return pod, containerInfo{PodID: req.PodSandboxId, Name: cfg.GetMetadata().GetName(), Image: imageName(cfg.GetImage()),
		Mounts: mountsFromCRI(cfg.GetMounts()), MountsKnown: true}, true
}

// beforeUpdateContainerResources keeps kubelet's resource updates from taking the
// limits out of the container's spec, or loosening its pids, memory and cpu: one
// decode and one lookup for both, encoded again only if either changed it.
func (s *Service) beforeUpdateContainerResources(ctx context.Context, reqB []byte) ([]byte, error) {
	var req runtimeapi.UpdateContainerResourcesRequest
	if !s.decode("UpdateContainerResources", reqB, &req) || req.Linux == nil {
		return reqB, nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	ct, pod, err := s.lookup(ctx, req.ContainerId)
	if err != nil {
		return reqB, nil
	}
	withIOMax := s.ioMaxIntoUpdate(ctx, req.Linux, pod, ct)
	tightened := s.tightenUpdate(req.Linux, pod, ct)
	if !withIOMax && !tightened {
		return reqB, nil
	}
	return s.encode("UpdateContainerResources", &req, reqB), nil
}

// ioMaxIntoUpdate keeps the container's io.max in an update's unified resources
// (v2), and reports whether it changed them: the runtime writes what the update
// carries, which must not lift the limit criguard put there.
func (s *Service) ioMaxIntoUpdate(ctx context.Context, res *runtimeapi.LinuxContainerResources, pod podInfo, ct containerInfo) bool {
	if s.opts.IO.Version() != 2 || s.opts.DryRun {
		return false
	}
	want, ok := s.wantedIOMax(ctx, pod, ct)
	return ok && s.tightenUnifiedIOMax(res, want, "UpdateContainerResources", pod, ct)
}

// wantedIOMax is the io.max limit a container's own cgroup must hold, for the
// runtime to write. The kernel takes one device per write, so a class on several
// disks puts its first here and the rest follow at start. A pod budget belongs to
// the pod's cgroup.
func (s *Service) wantedIOMax(ctx context.Context, pod podInfo, ct containerInfo) (cgroup.IOLimit, bool) {
	plan := Plan{Decision: s.opts.Policy().Decide(workload(pod, &ct))}
	if plan.Decision.HandsOff || plan.Decision.Scope == policy.ScopePod || len(plan.Decision.IO) == 0 {
		return cgroup.IOLimit{}, false
	}
	s.planLimits(ctx, &plan, []containerInfo{ct})
	if len(plan.Limits) == 0 {
		return cgroup.IOLimit{}, false
	}
	return plan.Limits[0], true
}

// tightenUnifiedIOMax makes res's unified io.max at least as strict as want: a
// limit kubelet (or anything before criguard) put there keeps its stricter keys and
// loses its looser ones. It reports whether it changed res.
func (s *Service) tightenUnifiedIOMax(res *runtimeapi.LinuxContainerResources, want cgroup.IOLimit, method string, pod podInfo, ct containerInfo) bool {
	have, set := res.Unified[unifiedIOMax]
	limit, change := translate.TightenIOMax(have, set, want)
	if !change {
		return false
	}
	writes := s.opts.IO.Writes([]cgroup.IOLimit{limit})
	if len(writes) != 1 || writes[0].File != unifiedIOMax {
		return false
	}
	if res.Unified == nil {
		res.Unified = map[string]string{}
	}
	res.Unified[unifiedIOMax] = writes[0].Value
	if set {
		s.log.Info("io.max tightened", "method", method, "pod", pod.Namespace+"/"+pod.Name, "name", ct.Name,
			"from", have, "to", writes[0].Value)
	}
	return true
}

// beforeStartContainer writes the container's limits into its cgroup before the
// runtime starts the process. Anything that fails here is only logged: the
// read-back after the reply applies the limits, or fails the call when fail-closed.
func (s *Service) beforeStartContainer(ctx context.Context, reqB []byte) ([]byte, error) {
	var req runtimeapi.StartContainerRequest
	if s.opts.DryRun || !s.decode("StartContainer", reqB, &req) {
		return reqB, nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if !s.wantsOwnLimits(ctx, req.ContainerId) {
		return reqB, nil // nothing to write: make no cgroup either
	}
	plan, err := s.planContainerFor(ctx, req.ContainerId, planOptions{create: true, starting: true})
	if err != nil {
		s.log.Debug("limits not in place before start; applied after it", "container", req.ContainerId, "err", err)
		return reqB, nil
	}
	if _, _, err := s.apply(plan, "container", req.ContainerId); err != nil {
		s.log.Debug("limits not in place before start; applied after it", "container", req.ContainerId, "err", err)
	}
	return reqB, nil
}

// isCgroupfsPath reports whether a runtime cgroupsPath is a cgroupfs path, which
// criguard may create, rather than a systemd unit, which only systemd makes.
func isCgroupfsPath(raw string) bool { return strings.HasPrefix(raw, "/") }

// wantsOwnLimits reports whether the policy gives the container limits in its own
// cgroup (a pod budget on v2 lives in the pod's).
func (s *Service) wantsOwnLimits(ctx context.Context, id string) bool {
	ct, pod, err := s.lookup(ctx, id)
	if err != nil {
		return false
	}
	d := s.opts.Policy().Decide(workload(pod, &ct))
	if d.HandsOff || len(d.IO) == 0 {
		return false
	}
	return d.Scope != policy.ScopePod || s.splitPodBudget
}
