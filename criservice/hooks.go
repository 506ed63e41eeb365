package criservice

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/policy"
)

// Hook mirrors proxy.Hook so that this package does not depend on the proxy.
type Hook struct {
	Before func(ctx context.Context, req []byte) ([]byte, error)
	After  func(ctx context.Context, req, resp []byte, err error) error
	Answer func(ctx context.Context, req []byte, err error) ([]byte, bool)
}

const runtimeService = "/runtime.v1.RuntimeService/"

// Hooks are the calls criservice decodes, by full method name. Every other
// call passes through the proxy untouched.
func (s *Service) Hooks() map[string]Hook {
	return map[string]Hook{
		runtimeService + "RunPodSandbox":   {After: s.afterRunPodSandbox},
		runtimeService + "CreateContainer": {Before: s.beforeCreateContainer, After: s.afterCreateContainer},
		runtimeService + "StartContainer": {Before: chainBefore(s.beforeStartContainer, s.pidsBeforeStart),
			After: chainAfter(s.afterStartContainer, s.resourcesAfterStart)},
		runtimeService + "UpdateContainerResources": {Before: s.beforeUpdateContainerResources, After: s.afterUpdateContainerResources},
		runtimeService + "StopContainer":            {After: s.afterStopContainer},
		runtimeService + "RemoveContainer":          {After: s.afterRemoveContainer},
		runtimeService + "RemovePodSandbox":         {After: s.afterRemovePodSandbox},
		runtimeService + "ListPodSandboxStats":      {Answer: s.answerListPodSandboxStats},
		runtimeService + "PodSandboxStats":          {Answer: s.answerPodSandboxStats},
	}
}

// decode reads what a hook needs; a message it cannot decode is logged and
// left alone: the call itself already went through unchanged.
func (s *Service) decode(method string, b []byte, m proto.Message) bool {
	if err := s.codec.unmarshal(b, m); err != nil {
		s.log.Warn("cannot decode intercepted CRI message; not acting on it", "method", method, "err", err)
		return false
	}
	return true
}

// encode is a rewritten request; one that cannot be encoded leaves kubelet's,
// orig, to go on as it came.
func (s *Service) encode(method string, m proto.Message, orig []byte) []byte {
	out, err := s.codec.marshal(m)
	if err != nil {
		s.log.Warn("cannot encode rewritten CRI message; passing kubelet's", "method", method, "err", err)
		return orig
	}
	return out
}

// protoCodec decodes and encodes the intercepted messages: proto's, counted by tests.
type protoCodec struct {
	unmarshal func([]byte, proto.Message) error
	marshal   func(proto.Message) ([]byte, error)
}

// detached is the context for work done after the runtime replied: the
// caller's cancel must not cut a half-written throttle.
func (s *Service) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.opts.ApplyTimeout)
}

func (s *Service) afterRunPodSandbox(ctx context.Context, reqB, respB []byte, callErr error) error {
	if callErr != nil {
		return callErr
	}
	var req runtimeapi.RunPodSandboxRequest
	var resp runtimeapi.RunPodSandboxResponse
	if !s.decode("RunPodSandbox", reqB, &req) || !s.decode("RunPodSandbox", respB, &resp) {
		return nil
	}
	pod := podFromConfig(resp.PodSandboxId, req.GetConfig())
	s.cache.putPod(pod)
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if _, _, err := s.ApplyPod(ctx, pod); err != nil {
		s.failed("pod", pod.ID, err)
	}
	return nil
}

func (s *Service) afterCreateContainer(ctx context.Context, reqB, respB []byte, callErr error) error {
	if callErr != nil {
		return callErr
	}
	var req runtimeapi.CreateContainerRequest
	var resp runtimeapi.CreateContainerResponse
	if !s.decode("CreateContainer", reqB, &req) || !s.decode("CreateContainer", respB, &resp) {
		return nil
	}
	if _, known := s.cache.pod(req.PodSandboxId); !known && req.SandboxConfig != nil {
		s.cache.putPod(podFromConfig(req.PodSandboxId, req.SandboxConfig))
	}
	cfg := req.GetConfig()
	s.cache.putContainer(containerInfo{ID: resp.ContainerId, PodID: req.PodSandboxId,
		Name: cfg.GetMetadata().GetName(), Image: imageName(cfg.GetImage()),
		Mounts: mountsFromCRI(cfg.GetMounts()), MountsKnown: true})
	// The container's spec exists now: learn its cgroup here, so that StartContainer
	// only writes files before it is forwarded.
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if raw, err := s.opts.Resolver.CgroupsPath(ctx, resp.ContainerId); err == nil {
		s.cache.setContainerDir(resp.ContainerId, raw, "")
	}
	return nil
}

func (s *Service) afterStartContainer(ctx context.Context, reqB, _ []byte, callErr error) error {
	if callErr != nil {
		return callErr
	}
	var req runtimeapi.StartContainerRequest
	if !s.decode("StartContainer", reqB, &req) {
		return nil
	}
	start := time.Now()
	applyCtx, cancel := s.detached(ctx)
	defer cancel()
	plan, _, err := s.ApplyContainer(applyCtx, req.ContainerId)
	if err == nil && plan.Decision.Scope == policy.ScopePod && !s.splitPodBudget && (s.opts.FailClosed || hasSelectors(plan.Decision.IO)) {
		// The container's limits are its pod's: they must be in place too. A budget on
		// volumes takes this container's volumes in now.
		err = s.podBudgetInPlace(applyCtx, plan.PodID)
	}
	took := time.Since(start)
	if s.metrics != nil {
		s.metrics.applyLatency.Observe(took.Seconds())
	}
	s.log.Debug("start handled", "container", req.ContainerId, "apply_seconds", took.Seconds(), "err", err)
	if err == nil {
		if plan.Decision.Scope == policy.ScopePod {
			s.reshare(applyCtx, plan.PodID, req.ContainerId)
		}
		return nil
	}
	s.failed("container", req.ContainerId, err)
	if !s.opts.FailClosed {
		return nil
	}
	// Fail closed: the container must not run unthrottled.
	stopCtx, cancelStop := s.detached(ctx)
	defer cancelStop()
	if _, stopErr := s.opts.Runtime.StopContainer(stopCtx, &runtimeapi.StopContainerRequest{ContainerId: req.ContainerId}); stopErr != nil {
		s.log.Error("fail-closed: cannot stop unthrottled container", "container", req.ContainerId, "err", stopErr)
	}
	return status.Errorf(codes.FailedPrecondition, "criguard: throttle for container %s not applied (--fail-closed): %v", req.ContainerId, err)
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

func (s *Service) afterUpdateContainerResources(ctx context.Context, reqB, _ []byte, callErr error) error {
	if callErr != nil {
		return callErr
	}
	var req runtimeapi.UpdateContainerResourcesRequest
	if !s.decode("UpdateContainerResources", reqB, &req) {
		return nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	if _, _, err := s.ApplyContainer(ctx, req.ContainerId); err != nil {
		s.failed("container", req.ContainerId, err)
	}
	return nil
}

// afterStopContainer gives a stopped container's share of a v1 pod budget
// back to the pod's other containers.
func (s *Service) afterStopContainer(ctx context.Context, reqB, _ []byte, callErr error) error {
	var req runtimeapi.StopContainerRequest
	if callErr != nil || !s.splitPodBudget || !s.decode("StopContainer", reqB, &req) {
		return callErr
	}
	ct, ok := s.cache.container(req.ContainerId)
	if !ok {
		return nil
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	s.reshare(ctx, ct.PodID, req.ContainerId)
	return nil
}

// reshare re-applies the pod's other containers when its v1 budget is split,
// since their share changes when one starts or stops. Containers without a
// pod-scope decision are unchanged by it.
func (s *Service) reshare(ctx context.Context, podID, except string) {
	if !s.splitPodBudget || podID == "" {
		return
	}
	ids, err := s.podContainers(ctx, podID)
	if err != nil {
		s.failed("pod", podID, err)
		return
	}
	for _, id := range ids {
		if id == except {
			continue
		}
		if _, _, err := s.ApplyContainer(ctx, id); err != nil {
			s.failed("container", id, err)
		}
	}
}

func (s *Service) afterRemoveContainer(_ context.Context, reqB, _ []byte, callErr error) error {
	var req runtimeapi.RemoveContainerRequest
	if callErr == nil && s.decode("RemoveContainer", reqB, &req) {
		s.cache.forgetContainer(req.ContainerId)
	}
	return callErr
}

func (s *Service) afterRemovePodSandbox(_ context.Context, reqB, _ []byte, callErr error) error {
	var req runtimeapi.RemovePodSandboxRequest
	if callErr == nil && s.decode("RemovePodSandbox", reqB, &req) {
		s.cache.forgetPod(req.PodSandboxId)
	}
	return callErr
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
