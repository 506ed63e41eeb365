// Package criservice is the CRI-aware half of criguard: it decodes the few
// calls that matter, keeps pod and container metadata, resolves cgroups and
// brings their I/O limits to what the policy says.
package criservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// DeviceResolver turns a policy device spec into the whole disk's MAJ:MIN.
type DeviceResolver interface {
	Resolve(spec string) (cgroup.Device, error)
}

// Options configure a Service. Runtime, IO and Resolver are required.
type Options struct {
	Runtime  runtimeapi.RuntimeServiceClient
	IO       cgroup.IO
	Resolver Resolver
	Devices  DeviceResolver
	// Policy returns the policy in force; nil means forward only.
	Policy func() *policy.Policy
	// FailClosed makes StartContainer fail (and the container stop) when its
	// throttle cannot be applied. The default is fail open.
	FailClosed bool
	// DryRun logs the writes it would make and makes none.
	DryRun bool
	// ApplyTimeout bounds the work done after StartContainer returns.
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Service applies policy to containers.
type Service struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	cache   *cache

	devMu   sync.Mutex
	devices map[string]cgroup.Device

	// splitPodBudget is set on cgroup v1, where blk-throttle is not
	// hierarchical: a limit on the pod's cgroup would bind none of its
	// containers, so each running container gets an equal share instead.
	splitPodBudget bool
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Runtime == nil || opts.IO == nil || opts.Resolver == nil {
		return nil, errors.New("criservice: Runtime, IO and Resolver are required")
	}
	if opts.Devices == nil {
		opts.Devices = cgroup.DeviceResolver{}
	}
	if opts.Policy == nil {
		opts.Policy = func() *policy.Policy { return nil }
	}
	if opts.ApplyTimeout <= 0 {
		opts.ApplyTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		cache:   newCache(),
		devices: map[string]cgroup.Device{},

		splitPodBudget: opts.IO.Version() == 1,
	}, nil
}

// Plan is everything criguard decides about one cgroup: who it is, what the
// policy gives it and why, where the cgroup is and the limits that belong there.
type Plan struct {
	ContainerID string // empty for a pod's own cgroup
	PodID       string
	Workload    policy.Workload
	Decision    policy.Decision
	CgroupsPath string
	Dir         string
	// Limits are what the cgroup at Dir must hold. For a container whose
	// decision is pod-scoped they are empty on v2, where the pod's cgroup
	// carries them, and its share of the pod budget on v1.
	Limits []cgroup.IOLimit
	// PodShare is how many running containers split the pod budget (v1).
	PodShare int
}

// planContainer decides what container id's own cgroup must hold.
func (s *Service) planContainer(ctx context.Context, id string) (Plan, error) {
	ct, pod, err := s.lookup(ctx, id)
	if err != nil {
		return Plan{}, err
	}
	plan := Plan{ContainerID: id, PodID: ct.PodID}
	if ct.Dir == "" {
		raw, err := s.opts.Resolver.CgroupsPath(ctx, id)
		if err != nil {
			return plan, err
		}
		dir, err := translate.CgroupDir(s.opts.IO.Mount(), raw)
		if err == nil {
			err = cgroup.CheckDir(s.opts.IO.Mount(), dir)
		}
		if err != nil {
			return plan, fmt.Errorf("container %s: cgroupsPath %q: %w", id, raw, err)
		}
		ct.CgroupsPath, ct.Dir = raw, dir
		s.cache.setContainerDir(id, raw, dir)
	}
	plan.CgroupsPath, plan.Dir = ct.CgroupsPath, ct.Dir
	plan.Workload = workload(pod, &ct)
	plan.Decision = s.opts.Policy().Decide(plan.Workload)
	s.noteIgnored(plan)
	switch {
	case plan.Decision.Scope != policy.ScopePod:
		plan.Limits, err = s.limits(plan.Decision.IO)
	case s.splitPodBudget:
		plan.Limits, err = s.limits(plan.Decision.IO)
		if err == nil {
			var n int
			n, err = s.runningInPod(ctx, ct.PodID)
			plan.Limits, plan.PodShare = share(plan.Limits, n), n
		}
	}
	return plan, err
}

// runningInPod counts the pod's running containers, which share its budget on v1.
func (s *Service) runningInPod(ctx context.Context, podID string) (int, error) {
	ids, err := s.podContainers(ctx, podID)
	return max(len(ids), 1), err
}

func (s *Service) podContainers(ctx context.Context, podID string) ([]string, error) {
	resp, err := s.opts.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: podID, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil {
		return nil, fmt.Errorf("list containers of pod %s: %w", podID, err)
	}
	ids := make([]string, 0, len(resp.Containers))
	for _, c := range resp.Containers {
		ids = append(ids, c.Id)
	}
	return ids, nil
}

// share divides every key of a pod budget among n containers, never below 1
// (0 would mean "unlimited").
func share(limits []cgroup.IOLimit, n int) []cgroup.IOLimit {
	if n <= 1 {
		return limits
	}
	div := func(v uint64) uint64 {
		if v == 0 {
			return 0
		}
		return max(v/uint64(n), 1)
	}
	out := make([]cgroup.IOLimit, len(limits))
	for i, l := range limits {
		out[i] = cgroup.IOLimit{Device: l.Device, ReadBPS: div(l.ReadBPS), WriteBPS: div(l.WriteBPS), ReadIOPS: div(l.ReadIOPS), WriteIOPS: div(l.WriteIOPS)}
	}
	return out
}

// planPod decides what a pod's own cgroup must hold: a pod-scope budget or nothing.
func (s *Service) planPod(ctx context.Context, pod podInfo) (Plan, error) {
	plan := Plan{PodID: pod.ID, Workload: workload(pod, nil)}
	plan.Decision = s.opts.Policy().Decide(plan.Workload)
	// On v1 the budget is split among the containers; the pod cgroup holds nothing.
	podScoped := plan.Decision.Scope == policy.ScopePod && len(plan.Decision.IO) > 0 && !s.splitPodBudget
	if pod.CgroupParent == "" {
		if podScoped {
			return plan, fmt.Errorf("%w: pod %s/%s (%s) needs a pod-scope budget", ErrNoPodCgroup, pod.Namespace, pod.Name, pod.ID)
		}
		return plan, nil
	}
	plan.CgroupsPath = pod.CgroupParent
	dir, err := translate.PodCgroupDir(s.opts.IO.Mount(), pod.CgroupParent)
	if err == nil {
		err = cgroup.CheckDir(s.opts.IO.Mount(), dir)
	}
	if err != nil {
		return plan, fmt.Errorf("pod %s: cgroup_parent %q: %w", pod.ID, pod.CgroupParent, err)
	}
	plan.Dir = dir
	if podScoped {
		plan.Limits, err = s.limits(plan.Decision.IO)
	}
	return plan, err
}

func (s *Service) noteIgnored(p Plan) {
	for _, ig := range p.Decision.Ignored {
		s.log.Warn("annotation ignored", "container", p.ContainerID, "pod", p.Workload.Namespace+"/"+p.Workload.PodName, "why", ig.String())
		s.metrics.annotationIgnored(string(ig.Reason))
	}
}

// limits resolves the policy's device specs to MAJ:MIN. Two specs that land
// on one disk merge, the tightest value of each key winning.
func (s *Service) limits(io []policy.IOLimits) ([]cgroup.IOLimit, error) {
	var out []cgroup.IOLimit
	for _, l := range io {
		if l.IsZero() {
			continue
		}
		dev, err := s.device(l.Device)
		if err != nil {
			return nil, err
		}
		out = append(out, cgroup.IOLimit{Device: dev, ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return translate.MergeLimits(out), nil
}

// device caches resolutions: a device's MAJ:MIN does not change while it exists.
func (s *Service) device(spec string) (cgroup.Device, error) {
	s.devMu.Lock()
	dev, ok := s.devices[spec]
	s.devMu.Unlock()
	if ok {
		return dev, nil
	}
	dev, err := s.opts.Devices.Resolve(spec)
	if err != nil {
		return dev, fmt.Errorf("device %q: %w", spec, err)
	}
	s.devMu.Lock()
	s.devices[spec] = dev
	s.devMu.Unlock()
	return dev, nil
}

// forgetDevices drops resolved devices, e.g. after a policy reload.
func (s *Service) forgetDevices() {
	s.devMu.Lock()
	clear(s.devices)
	s.devMu.Unlock()
}

// syncResult says what enforce did to one cgroup.
type syncResult string

const (
	resultUnchanged syncResult = "unchanged"
	resultApplied   syncResult = "applied"
	resultReset     syncResult = "reset"
)

// enforce brings the cgroup at plan.Dir to plan.Limits: it reads what is
// there, writes only the difference, and clears devices the plan no longer limits.
func (s *Service) enforce(plan Plan) (syncResult, []cgroup.Write, error) {
	if plan.Dir == "" {
		return resultUnchanged, nil, nil
	}
	current, err := s.opts.IO.Limits(plan.Dir)
	if err != nil {
		return "", nil, fmt.Errorf("read limits of %s: %w", plan.Dir, err)
	}
	writes := s.difference(current, plan.Limits)
	if len(writes) == 0 {
		return resultUnchanged, nil, nil
	}
	result := resultApplied
	if len(plan.Limits) == 0 {
		result = resultReset
	}
	if s.opts.DryRun {
		s.log.Info("dry run: would write", "dir", plan.Dir, "writes", writesAttr(writes))
		return result, writes, nil
	}
	if err := s.opts.IO.Available(plan.Dir); err != nil {
		return "", nil, err
	}
	if err := cgroup.Apply(plan.Dir, writes); err != nil {
		return "", nil, err
	}
	return result, writes, nil
}

// difference is the writes that turn current into desired; none when they agree.
func (s *Service) difference(current, desired []cgroup.IOLimit) []cgroup.Write {
	if translate.InSync(current, desired) {
		return nil
	}
	return translate.IOWrites(s.opts.IO, current, desired)
}

func writesAttr(writes []cgroup.Write) []string {
	out := make([]string, len(writes))
	for i, w := range writes {
		out[i] = w.File + "=" + w.Value
	}
	return out
}

// ApplyContainer brings one container's cgroup to the policy. It is what
// StartContainer, UpdateContainerResources and the reconcile loop call.
func (s *Service) ApplyContainer(ctx context.Context, id string) (Plan, syncResult, error) {
	plan, err := s.planContainer(ctx, id)
	if err != nil {
		return plan, "", err
	}
	result, writes, err := s.enforce(plan)
	if err != nil {
		return plan, "", fmt.Errorf("container %s: %w", id, err)
	}
	if result != resultUnchanged {
		s.log.Info("throttle "+string(result), "container", id, "pod", plan.Workload.Namespace+"/"+plan.Workload.PodName,
			"name", plan.Workload.ContainerName, "dir", plan.Dir, "why", plan.Decision.Reason, "writes", writesAttr(writes))
	}
	if result != resultUnchanged {
		s.metrics.throttle(string(result), "container")
	}
	return plan, result, nil
}

// ApplyPod brings a pod's own cgroup to the policy (pod-scope budgets).
func (s *Service) ApplyPod(ctx context.Context, pod podInfo) (Plan, syncResult, error) {
	plan, err := s.planPod(ctx, pod)
	if err != nil {
		return plan, "", err
	}
	result, writes, err := s.enforce(plan)
	if err != nil {
		return plan, "", fmt.Errorf("pod %s: %w", pod.ID, err)
	}
	if result != resultUnchanged {
		s.log.Info("pod throttle "+string(result), "pod", pod.Namespace+"/"+pod.Name, "id", pod.ID,
			"dir", plan.Dir, "why", plan.Decision.Reason, "writes", writesAttr(writes))
	}
	if result != resultUnchanged {
		s.metrics.throttle(string(result), "pod")
	}
	return plan, result, nil
}

// Close releases the resolvers' connections.
func (s *Service) Close() error {
	if c, ok := s.opts.Resolver.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
