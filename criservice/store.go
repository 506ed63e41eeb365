package criservice

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// store is the metadata store: the pods and containers seen in calls (cache),
// and what the runtime and the resolver answer when the cache lacks it. Every
// call it makes on its own is bounded by timeout, so a stuck runtime never holds
// a hook or a pass.
type store struct {
	*cache
	runtime  runtimeapi.RuntimeServiceClient
	resolver Resolver
	timeout  time.Duration
	log      *slog.Logger
}

// lookup returns a container and its pod from the cache, asking the runtime
// for what the cache lacks (after a restart of criguard, or a container
// created behind its back).
func (s *store) lookup(ctx context.Context, id string) (Container, Pod, error) {
	ct, ok := s.cache.container(id)
	if !ok {
		callCtx, cancel := s.callContext(ctx)
		resp, err := s.runtime.ListContainers(callCtx, &runtimeapi.ListContainersRequest{
			Filter: &runtimeapi.ContainerFilter{Id: id},
		})
		cancel()
		if err != nil {
			return ct, Pod{}, fmt.Errorf("list container %s: %w", id, err)
		}
		if len(resp.Containers) == 0 {
			return ct, Pod{}, fmt.Errorf("%w: %s", ErrUnknownContainer, id)
		}
		s.putListedContainer(ctx, containerFromCRI(resp.Containers[0]))
		ct, _ = s.cache.container(id)
	}
	pod, err := s.lookupPod(ctx, ct.PodID)
	return ct, pod, err
}

func (s *store) lookupPod(ctx context.Context, id string) (Pod, error) {
	if pod, ok := s.cache.pod(id); ok {
		return pod, nil
	}
	callCtx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.runtime.ListPodSandbox(callCtx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{Id: id},
	})
	if err != nil {
		return Pod{}, fmt.Errorf("list pod %s: %w", id, err)
	}
	if len(resp.Items) == 0 {
		return Pod{}, fmt.Errorf("%w: pod %s", ErrUnknownContainer, id)
	}
	pod := podFromCRI(resp.Items[0])
	s.fillCgroupParent(ctx, &pod)
	s.cache.putPod(pod)
	return pod, nil
}

// fillCgroupParent learns a listed pod's cgroup_parent, which the CRI list
// calls do not carry, from the resolvers that know it.
func (s *store) fillCgroupParent(ctx context.Context, pod *Pod) {
	if pod.CgroupParent != "" {
		return
	}
	pr, ok := s.resolver.(resolve.PodResolver)
	if !ok {
		return
	}
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	parent, err := pr.PodCgroupParent(ctx, pod.ID)
	if err != nil {
		s.log.Debug("pod cgroup_parent unknown", "pod", pod.ID, "err", err)
		return
	}
	pod.CgroupParent = parent
}

// putListedContainer caches a container learned from a listing. A runtime may list
// only the image's digest: the name the pod spec gave, which policy globs are
// written against, is asked once from the container's status.
func (s *store) putListedContainer(ctx context.Context, ct Container) {
	if isImageDigest(ct.Image) {
		if known, ok := s.cache.container(ct.ID); !ok || isImageDigest(known.Image) {
			if name := s.imageFromStatus(ctx, ct.ID); name != "" {
				ct.Image = name
			}
		}
	}
	s.cache.putContainer(ct)
}

func (s *store) imageFromStatus(ctx context.Context, id string) string {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return ""
	}
	for _, name := range []string{imageName(resp.GetStatus().GetImage()), resp.GetStatus().GetImage().GetImage()} {
		if !isImageDigest(name) {
			return name
		}
	}
	return ""
}

func containerFromCRI(c *runtimeapi.Container) Container {
	image := imageName(c.GetImage())
	if image == "" {
		image = c.GetImageRef()
	}
	return Container{ID: c.GetId(), PodID: c.GetPodSandboxId(), Name: c.GetMetadata().GetName(), Image: image}
}

// imageName is the image as the pod spec names it: kubelet sends the resolved
// ID in Image and the name the user wrote in UserSpecifiedImage, and policy
// globs are written against names.
func imageName(spec *runtimeapi.ImageSpec) string {
	if name := spec.GetUserSpecifiedImage(); name != "" {
		return name
	}
	return spec.GetImage()
}

func podFromCRI(p *runtimeapi.PodSandbox) Pod {
	md := p.GetMetadata()
	return Pod{ID: p.GetId(), Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(),
		Labels: p.GetLabels(), Annotations: p.GetAnnotations()}
}

func podFromConfig(id string, cfg *runtimeapi.PodSandboxConfig) Pod {
	md := cfg.GetMetadata()
	return Pod{ID: id, Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), CgroupParent: cfg.GetLinux().GetCgroupParent()}
}

// workload is what policy matches; ct nil means the pod itself.
func workload(pod Pod, ct *Container) policy.Workload {
	w := policy.Workload{
		Namespace: pod.Namespace, PodName: pod.Name, PodUID: pod.UID,
		PodLabels: pod.Labels, PodAnnotations: pod.Annotations,
		QoS: translate.QoSFromCgroupParent(pod.CgroupParent),
	}
	if ct != nil {
		w.ContainerName, w.Image = ct.Name, ct.Image
		if w.QoS == "" && ct.CgroupsPath != "" {
			w.QoS = translate.QoSFromCgroupParent(ct.CgroupsPath)
		}
	}
	return w
}

// listTimeoutFactor bounds one listing of the whole node: a few times what a single
// call may take.
const listTimeoutFactor = 5

// listRunning lists ready pods and running containers and puts them in the
// cache: the metadata reconcile and status work from. A pod's cgroup_parent,
// which lists do not carry, comes from the cache or else the resolvers. created
// holds the containers made but not started yet: their metadata, learned at
// CreateContainer, must outlive a pass that runs between create and start.
func (s *store) listRunning(ctx context.Context) (pods []Pod, running []string, created map[string]bool, err error) {
	listCtx, cancel := context.WithTimeout(ctx, listTimeoutFactor*s.timeout)
	defer cancel()
	podList, err := s.runtime.ListPodSandbox(listCtx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list pods: %w", err)
	}
	// One unfiltered list: running containers are reconciled, created ones kept.
	containerList, err := s.runtime.ListContainers(listCtx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list containers: %w", err)
	}
	pods = make([]Pod, 0, len(podList.Items))
	for _, p := range podList.Items {
		pod := podFromCRI(p)
		if cached, ok := s.cache.pod(p.Id); ok {
			pod.CgroupParent, pod.decided = cached.CgroupParent, cached.decided
		} else {
			s.fillCgroupParent(ctx, &pod)
		}
		s.cache.putPod(pod)
		pods = append(pods, pod)
	}
	running = make([]string, 0, len(containerList.Containers))
	created = map[string]bool{}
	for _, c := range containerList.Containers {
		switch c.GetState() {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			s.putListedContainer(ctx, containerFromCRI(c))
			running = append(running, c.Id)
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			created[c.Id] = true
		}
	}
	return pods, running, created, nil
}

// cgroupsPath is the container's raw cgroup path, asked of the runtime once, with
// a deadline of its own: a stuck runtime call never holds a hook or a pass.
func (s *store) cgroupsPath(ctx context.Context, ct *Container) (string, error) {
	if ct.CgroupsPath != "" {
		return ct.CgroupsPath, nil // learned at CreateContainer, when the runtime had it
	}
	callCtx, cancel := s.callContext(ctx)
	defer cancel()
	raw, err := s.resolver.CgroupsPath(callCtx, ct.ID)
	if err != nil {
		return "", err
	}
	ct.CgroupsPath = raw
	s.cache.setContainerDir(ct.ID, raw, "")
	return raw, nil
}

// podContainers lists a pod's running containers: the runtime's listing, corrected
// by the start and stop events it may not show yet.
func (s *store) podContainers(ctx context.Context, podID string) ([]string, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: podID, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil {
		return nil, fmt.Errorf("list containers of pod %s: %w", podID, err)
	}
	ids := make([]string, 0, len(resp.Containers))
	for _, c := range resp.Containers {
		ids = append(ids, c.Id)
	}
	return s.cache.runningOf(podID, ids), nil
}

// callContext bounds one runtime call criguard makes on its own: a hung runtime
// never holds a hook or a reconcile pass beyond --apply-timeout per call.
func (s *store) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// podParentFromContainers learns a pod's cgroup parent from one of its containers'
// cgroup paths, whatever resolver found them: the parent of a container's cgroup is
// its pod's. It is how a pod budget comes back after a restart on every resolver.
func (s *store) podParentFromContainers(ctx context.Context, podID string) string {
	for _, raw := range s.cache.containerPathsOf(podID) {
		if parent := translate.ParentOfCgroupsPath(raw); parent != "" {
			s.cache.setPodParent(podID, parent)
			return parent
		}
	}
	ids, err := s.podContainers(ctx, podID)
	if err != nil {
		return ""
	}
	for _, id := range ids {
		callCtx, cancel := s.callContext(ctx)
		raw, err := s.resolver.CgroupsPath(callCtx, id)
		cancel()
		if err != nil {
			continue
		}
		if parent := translate.ParentOfCgroupsPath(raw); parent != "" {
			s.cache.setPodParent(podID, parent)
			return parent
		}
	}
	return ""
}

// mountsOf is a container's mounts: from its CreateContainer request, or else (after
// a restart of criguard) from its status, which every runtime fills.
func (s *store) mountsOf(ctx context.Context, ct Container) ([]Mount, error) {
	if ct.MountsKnown || ct.ID == "" {
		return ct.Mounts, nil
	}
	callCtx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.runtime.ContainerStatus(callCtx, &runtimeapi.ContainerStatusRequest{ContainerId: ct.ID})
	if err != nil {
		return nil, fmt.Errorf("mounts of %s: %w", ct.ID, err)
	}
	mounts := mountsFromCRI(resp.GetStatus().GetMounts())
	s.cache.setMounts(ct.ID, mounts)
	return mounts, nil
}

// rootfsOf is the host directory of a container's writable layer, asked once.
func (s *store) rootfsOf(ctx context.Context, ct Container) (string, error) {
	if ct.Rootfs != "" {
		return ct.Rootfs, nil
	}
	rr, ok := s.resolver.(RootfsResolver)
	if !ok || ct.ID == "" {
		return "", fmt.Errorf("%w: resolver %s cannot find it", resolve.ErrNoRootfs, s.resolver.Name())
	}
	callCtx, cancel := s.callContext(ctx)
	defer cancel()
	path, err := rr.Rootfs(callCtx, ct.ID)
	if err != nil {
		return "", err
	}
	s.cache.setRootfs(ct.ID, path)
	return path, nil
}

// containersForPod lists the running containers of a pod (and the one starting) that
// a pod budget on their volumes covers.
func (s *store) containersForPod(ctx context.Context, podID, starting string) []Container {
	ids, err := s.podContainers(ctx, podID)
	if err != nil {
		ids = s.cache.containerIDsOf(podID)
	}
	if starting != "" && !slices.Contains(ids, starting) {
		ids = append(ids, starting)
	}
	var cts []Container
	for _, id := range ids {
		if ct, _, err := s.lookup(ctx, id); err == nil {
			cts = append(cts, ct)
		}
	}
	return cts
}
