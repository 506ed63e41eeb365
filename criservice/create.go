package criservice

import (
	"context"

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
// A class's pids, memory and cpu throttles travel in the CRI request too: the
// runtime writes them before the process starts, and kubelet's later updates pass
// through the same rewrite.

const unifiedIOMax = "io.max"

type createCall = call[*runtimeapi.CreateContainerRequest, createEvent]

// createEvent is the pod and container a CreateContainer request is for, read once.
type createEvent struct {
	pod Pod // zero when unknown: not in the store and no sandbox config
	ct  Container
}

// createContainer puts the policy's io.max (v2) and its pids, memory and cpu
// settings into the request, from one decision; encoded again only if either changed
// it. After the reply it learns the container and its cgroup, so that StartContainer
// only writes files before it is forwarded.
func (f *criFront) createContainer() Hook {
	return intercept(f, handler[*runtimeapi.CreateContainerRequest, *runtimeapi.CreateContainerResponse, createEvent]{
		method:  "CreateContainer",
		newReq:  func() *runtimeapi.CreateContainerRequest { return new(runtimeapi.CreateContainerRequest) },
		newResp: func() *runtimeapi.CreateContainerResponse { return new(runtimeapi.CreateContainerResponse) },
		before: func(ctx context.Context, c *createCall) bool {
			c.event = f.createEventOf(c.req)
			if c.req.Config == nil || c.event.pod.ID == "" {
				return false
			}
			return f.engine.Creating(ctx, c.event.pod, c.event.ct, resourcesOf(c.req.Config))
		},
		after: func(ctx context.Context, c *createCall, resp *runtimeapi.CreateContainerResponse) error {
			if c.event.ct.PodID == "" { // Before did not read the request
				c.event = f.createEventOf(c.req)
			}
			ct := c.event.ct
			ct.ID = resp.ContainerId
			f.engine.Created(ctx, c.event.pod, ct)
			return nil
		},
	})
}

// createEventOf is the pod and container a CreateContainer request is for, as the
// policy sees them: the pod from the store, or from the request's sandbox config.
func (f *criFront) createEventOf(req *runtimeapi.CreateContainerRequest) createEvent {
	pod, known := f.store.pod(req.PodSandboxId)
	if !known && req.SandboxConfig != nil {
		pod = podFromConfig(req.PodSandboxId, req.SandboxConfig)
	}
	return createEvent{pod: pod, ct: containerFromCreate(req)}
}

// containerFromCreate is the container a CreateContainer request asks for, before
// the runtime gave it an ID.
func containerFromCreate(req *runtimeapi.CreateContainerRequest) Container {
	cfg := req.GetConfig()
	return Container{PodID: req.PodSandboxId, Name: cfg.GetMetadata().GetName(), Image: imageName(cfg.GetImage()),
		Mounts: mountsFromCRI(cfg.GetMounts()), MountsKnown: true}
}

// resourcesOf is cfg's Linux resources, made when kubelet sent none.
func resourcesOf(cfg *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerResources {
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if cfg.Linux.Resources == nil {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{}
	}
	return cfg.Linux.Resources
}

// wantedIOMax is the io.max limit a container's own cgroup must hold, for the
// runtime to write. The kernel takes one device per write, so a class on several
// disks puts its first here and the rest follow at start. A pod budget belongs to
// the pod's cgroup.
func (s *Service) wantedIOMax(ctx context.Context, t target) (cgroup.IOLimit, bool) {
	plan := Plan{Decision: t.Decision}
	if plan.Decision.HandsOff || plan.Decision.Scope == policy.ScopePod || len(plan.Decision.IO) == 0 {
		return cgroup.IOLimit{}, false
	}
	s.planner.planLimits(ctx, &plan, []Container{t.Container})
	if len(plan.Limits) == 0 {
		return cgroup.IOLimit{}, false
	}
	return plan.Limits[0], true
}

// tightenUnifiedIOMax makes res's unified io.max at least as strict as want: a
// limit kubelet (or anything before criguard) put there keeps its stricter keys and
// loses its looser ones. It reports whether it changed res.
func (s *Service) tightenUnifiedIOMax(res *runtimeapi.LinuxContainerResources, want cgroup.IOLimit, method string, t target) bool {
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
		s.log.Info("io.max tightened", "method", method, "pod", t.Pod.Namespace+"/"+t.Pod.Name, "name", t.Container.Name,
			"from", have, "to", writes[0].Value)
	}
	return true
}
