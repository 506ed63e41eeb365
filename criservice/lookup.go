package criservice

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// target is a container as the policy sees it, with the one decision made for it
// per event: a call carries it from before the runtime's reply to after it.
type target struct {
	Container Container
	Pod       Pod
	Decision  policy.Decision
}

// containerTarget looks a container up and decides on it. Its cgroup path is
// learned first when the pod's parent is not known, since the QoS class the policy
// matches is read from them.
func (s *Service) containerTarget(ctx context.Context, id string) (target, error) {
	ct, pod, err := s.lookup(ctx, id)
	if err != nil {
		return target{Container: Container{ID: id}}, err
	}
	if pod.CgroupParent == "" {
		if _, err := s.cgroupsPath(ctx, &ct); err != nil {
			return target{Container: ct, Pod: pod}, err
		}
	}
	return s.decideFor(pod, ct), nil
}

func (s *Service) decideFor(pod Pod, ct Container) target {
	return target{Container: ct, Pod: pod, Decision: s.decide(workload(pod, &ct))}
}

// decide is the one place the policy in force is asked: counted by tests.
func (s *Service) decide(w policy.Workload) policy.Decision {
	return s.decider(s.opts.Policy(), w)
}

// lookup returns a container and its pod from the cache, asking the runtime
// for what the cache lacks (after a restart of criguard, or a container
// created behind its back).
func (s *Service) lookup(ctx context.Context, id string) (Container, Pod, error) {
	ct, ok := s.cache.container(id)
	if !ok {
		callCtx, cancel := s.callContext(ctx)
		resp, err := s.opts.Runtime.ListContainers(callCtx, &runtimeapi.ListContainersRequest{
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

func (s *Service) lookupPod(ctx context.Context, id string) (Pod, error) {
	if pod, ok := s.cache.pod(id); ok {
		return pod, nil
	}
	callCtx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.opts.Runtime.ListPodSandbox(callCtx, &runtimeapi.ListPodSandboxRequest{
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
func (s *Service) fillCgroupParent(ctx context.Context, pod *Pod) {
	if pod.CgroupParent != "" {
		return
	}
	pr, ok := s.opts.Resolver.(resolve.PodResolver)
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
func (s *Service) putListedContainer(ctx context.Context, ct Container) {
	if isImageDigest(ct.Image) {
		if known, ok := s.cache.container(ct.ID); !ok || isImageDigest(known.Image) {
			if name := s.imageFromStatus(ctx, ct.ID); name != "" {
				ct.Image = name
			}
		}
	}
	s.cache.putContainer(ct)
}

func (s *Service) imageFromStatus(ctx context.Context, id string) string {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	resp, err := s.opts.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
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
