// Package criservice is the CRI-aware half of criguard: it decodes the few
// calls that matter, keeps pod and container metadata, resolves cgroups and
// brings their I/O limits to what the policy says.
package criservice

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// DeviceResolver turns a policy device spec into the whole disk's MAJ:MIN.
type DeviceResolver interface {
	Resolve(spec string) (cgroup.Device, error)
}

// Resolver finds the raw cgroup path of a container: package resolve builds them.
type Resolver = resolve.Resolver

// Options configure a Service. Runtime, IO and Resolver are required.
type Options struct {
	Runtime  runtimeapi.RuntimeServiceClient
	IO       cgroup.IO
	Resolver Resolver
	Devices  DeviceResolver
	// Chains follows a container's volumes and writable layer to their disks; by
	// default cached by st_dev over Devices when that is a cgroup.DeviceResolver.
	Chains ChainResolver
	// Controllers finds the v1 controllers beyond I/O (pids.max); nil: none.
	Controllers ControllerMounts
	// Policy returns the policy in force; nil means hands off: criguard forwards
	// and writes nothing, resets nothing.
	Policy func() *policy.Policy
	// SystemdRoot replaces / where systemd's unit files are read; tests only.
	SystemdRoot string
	// UnitWeights sets weights on systemd units through systemd; nil: written to the files.
	UnitWeights UnitWeights
	// UnitLimits hands io.max keys to systemd on units that set I/O keys of their
	// own (systemd.go); nil: written to the files only.
	UnitLimits UnitLimits
	// PreStartDropIns puts a container's limits into its systemd scope as systemd
	// makes it, through a drop-in written before the start (dropin.go): the node runs
	// systemd on cgroup v2.
	PreStartDropIns bool
	// StateDir holds the record of every limit criguard wrote (OwnershipFile), so
	// that it resets and repairs only those, across restarts. Empty: in memory.
	StateDir string
	// FailClosed makes StartContainer fail (and the container stop) when its
	// throttle cannot be applied. The default is fail open.
	FailClosed bool
	// DryRun logs the writes it would make and makes none.
	DryRun bool
	// ApplyTimeout bounds the work done around StartContainer, and each runtime
	// call criguard makes on its own.
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Service applies policy to containers.
type Service struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	store   *store
	// enforcer is the one writer of limits and keeper of the ownership record.
	enforcer *enforcer
	// settings reads and writes pids, cpu and memory files, for this host's cgroups.
	settings cgroup.Settings

	devMu   sync.Mutex
	devices map[string]cgroup.Device

	conflictsSeen sync.Map // dir + conflict → logged once
	// conflicted holds, by cgroup dir, how to apply again a container or pod whose own
	// systemd unit shares a disk with criguard's limits (RecheckConflicted).
	conflicted sync.Map // dir → func(context.Context) error
	// conflictRecorded wakes the recheck loop, which sleeps while nothing is conflicted.
	conflictRecorded chan struct{}

	codec protoCodec
	// resourcesStale is set by a reload until a pass brought running containers'
	// pids, memory and cpu to the new policy.
	resourcesStale atomic.Bool

	// decider is policy.Policy.Decide; tests count the decisions.
	decider func(*policy.Policy, policy.Workload) policy.Decision

	// splitPodBudget is set on cgroup v1, where blk-throttle is not
	// hierarchical: a limit on the pod's cgroup would bind none of its
	// containers, so each running container gets an equal share instead.
	splitPodBudget bool

	burst       atomic.Pointer[bursts]     // nil: no burst loop (burst.go)
	protection  atomic.Pointer[protection] // nil: no protection loop (protect.go)
	classLimits sync.Map                   // container ID → its plan's ClassLimits (inforce.go)

	preStart    preStart
	runtimeName atomic.Pointer[string] // the runtime's Version name, once it answered (wantsDropIns)
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Runtime == nil || opts.IO == nil || opts.Resolver == nil {
		return nil, errors.New("criservice: Runtime, IO and Resolver are required")
	}
	if opts.Devices == nil {
		opts.Devices = cgroup.DeviceResolver{}
	}
	if opts.Chains == nil {
		r, _ := opts.Devices.(cgroup.DeviceResolver)
		opts.Chains = &cgroup.ChainCache{Resolver: r}
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
	path := ""
	if opts.StateDir != "" {
		path = filepath.Join(opts.StateDir, OwnershipFile)
	}
	owned, err := openOwnership(path)
	if err != nil {
		// Fail safe: with no record every limit looks foreign and none is lifted.
		opts.Logger.Error("ownership record unreadable; limits criguard wrote before count as foreign and are kept", "err", err)
	}
	settings := cgroup.NewSettings(opts.IO, opts.Controllers)
	enforcer := &enforcer{io: opts.IO, owned: owned, dryRun: opts.DryRun, log: opts.Logger, metrics: opts.Metrics,
		specCarriesLimits: settings.RuntimeTakesUnified(), units: opts.UnitLimits, unitTimeout: max(opts.ApplyTimeout, time.Second)}
	enforcer.weights = newWeightEnforcer(opts)
	pre := preStart{enabled: opts.PreStartDropIns && !opts.DryRun, root: opts.SystemdRoot}
	if pre.enabled {
		if n, err := pre.removeLeftovers(); err != nil {
			opts.Logger.Warn("cannot remove the pre-start drop-ins a crash left", "err", err)
		} else if n > 0 {
			opts.Logger.Info("removed pre-start drop-ins a crash left", "count", n)
		}
	}
	s := &Service{
		preStart: pre,
		opts:     opts,
		log:      opts.Logger,
		metrics:  opts.Metrics,
		store:    &store{cache: newCache(), runtime: opts.Runtime, resolver: opts.Resolver, timeout: opts.ApplyTimeout, log: opts.Logger},
		enforcer: enforcer,
		settings: settings,
		devices:  map[string]cgroup.Device{},
		codec:    protoCodec{unmarshal: proto.Unmarshal, marshal: proto.Marshal},
		decider:  (*policy.Policy).Decide,

		conflictRecorded: make(chan struct{}, 1),
		splitPodBudget:   !opts.IO.Hierarchical(),
	}
	enforcer.refresh = s.refreshInForce
	return s, nil
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
	// ClassLimits are what the policy gives the cgroup; Limits are them with the
	// burst and protection loops' limits in force laid over (container plans).
	ClassLimits []cgroup.IOLimit
	// Limits are what the cgroup at Dir must hold. For a container whose
	// decision is pod-scoped they are empty on v2, where the pod's cgroup
	// carries them, and its share of the pod budget on v1.
	Limits []cgroup.IOLimit
	// PodShare is how many running containers split the pod budget (v1).
	PodShare int
	// Unresolved are the policy devices that did not resolve on this host: the
	// others are applied all the same.
	Unresolved error
	// Conflicts are keys the cgroup's own systemd unit sets: left to systemd.
	Conflicts []string
	// unitEntries are the I/O entries of the cgroup's systemd unit, when criguard
	// hands its keys on those disks to the unit too (systemd.go); nil: it does not.
	unitEntries *unitReader
	// Mounts are the volumes and writable layers the decision's selectors found.
	Mounts []MountDisk
	// Weights are the per-device weights the cgroup at Dir must hold (weight.go).
	Weights []cgroup.IOWeight
	// ScopeToBe: Dir is a systemd scope the runtime's start is still to make
	// (dropin.go).
	ScopeToBe bool
}

// planContainer decides what a container's own cgroup must hold, from the
// decision already made for it. It fills in t's cgroup once resolved.
func (s *Service) planContainer(ctx context.Context, t *target, po planOptions) (Plan, error) {
	ct, id := &t.Container, t.Container.ID
	plan := Plan{ContainerID: id, PodID: ct.PodID, Workload: workload(t.Pod, ct), Decision: t.Decision}
	if ct.Dir == "" {
		raw, err := s.store.cgroupsPath(ctx, ct)
		if err != nil {
			return plan, err
		}
		dir, err := translate.CgroupDir(s.opts.IO.Mount(), raw)
		if err == nil && po.create && translate.IsCgroupfsPath(raw) {
			// A systemd unit is left to systemd: there the limits travel in the
			// CreateContainer request.
			err = cgroup.MakeDir(s.opts.IO.Mount(), dir)
		}
		if err == nil {
			err = cgroup.CheckDir(s.opts.IO.Mount(), dir)
		}
		if errors.Is(err, fs.ErrNotExist) && po.starting && !translate.IsCgroupfsPath(raw) && s.wantsDropIns(ctx) {
			// systemd makes the scope at the start (dropin.go); its slice is there.
			err = cgroup.CheckDir(s.opts.IO.Mount(), filepath.Dir(dir))
			plan.ScopeToBe = err == nil
		}
		if err != nil {
			return plan, fmt.Errorf("container %s: cgroupsPath %q: %w", id, raw, err)
		}
		ct.CgroupsPath, ct.Dir = raw, dir
		if !plan.ScopeToBe { // a start that fails leaves no scope: nothing to remember
			s.store.setContainerDir(id, raw, dir)
		}
	}
	plan.CgroupsPath, plan.Dir = ct.CgroupsPath, ct.Dir
	s.noteIgnored(plan)
	switch {
	case plan.Decision.HandsOff:
	case plan.Decision.Scope != policy.ScopePod:
		s.planLimits(ctx, &plan, []Container{*ct})
	case s.splitPodBudget:
		members := []Container{*ct}
		if hasSelectors(plan.Decision.IO) {
			members = s.store.containersForPod(ctx, ct.PodID, id) // the pod's volumes, not only this container's
		}
		s.planLimits(ctx, &plan, members)
		n, err := s.podScopedRunning(ctx, ct.PodID, id, po.starting)
		if err != nil {
			return plan, err
		}
		plan.Limits, plan.PodShare = share(plan.Limits, n), n
	}
	plan.ClassLimits = plan.Limits
	s.inForce(&plan, po.starting)
	s.planWeights(&plan)
	s.yieldToUnit(&plan)
	return plan, nil
}

// planContainerID looks a container up, decides on it and plans it: for explain,
// status and usage, which act on no event.
func (s *Service) planContainerID(ctx context.Context, id string) (Plan, error) {
	t, err := s.containerTarget(ctx, id)
	if err != nil {
		return Plan{ContainerID: id, PodID: t.Container.PodID}, err
	}
	return s.planContainer(ctx, &t, planOptions{})
}

type planOptions struct {
	// create makes a missing cgroupfs directory (before StartContainer: runc joins
	// a directory that exists, with the limits already in it).
	create bool
	// starting counts the container among its pod's running ones (v1 shares).
	starting bool
}

// podScopedRunning counts the pod's running containers whose own decision is the
// pod budget: on v1 they split it. Containers with a decision of their own do not.
func (s *Service) podScopedRunning(ctx context.Context, podID, self string, starting bool) (int, error) {
	ids, err := s.store.podContainers(ctx, podID)
	if err != nil {
		return 1, err
	}
	if starting && !slices.Contains(ids, self) {
		ids = append(ids, self)
	}
	n := 0
	for _, id := range ids {
		t, err := s.containerTarget(ctx, id)
		if err == nil && t.Decision.Scope == policy.ScopePod && !t.Decision.HandsOff {
			n++
		}
	}
	return max(n, 1), nil
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
func (s *Service) planPod(ctx context.Context, pod Pod) (Plan, error) {
	plan := Plan{PodID: pod.ID, Workload: workload(pod, nil)}
	plan.Decision = s.decide(plan.Workload)
	// On v1 the budget is split among the containers; the pod cgroup holds nothing.
	podScoped := plan.Decision.Scope == policy.ScopePod && len(plan.Decision.IO) > 0 && !s.splitPodBudget
	if plan.Decision.HandsOff {
		return plan, nil
	}
	// A pod-scope weight is the pod cgroup's on v1 too, where budgets are split.
	podWeighted := plan.Decision.Scope == policy.ScopePod && plan.Decision.HasWeights()
	if pod.CgroupParent == "" && (podScoped || podWeighted) {
		pod.CgroupParent = s.store.podParentFromContainers(ctx, pod.ID)
	}
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
		var members []Container
		if hasSelectors(plan.Decision.IO) {
			members = s.store.containersForPod(ctx, pod.ID, "")
		}
		s.planLimits(ctx, &plan, members)
	}
	s.planWeights(&plan)
	s.yieldToUnit(&plan)
	return plan, nil
}

// noteIgnored logs and counts a container's ignored annotations once, not on every
// reconcile pass: again only when what is ignored changes. Annotations are the
// tenant's: whatever they write costs one line per reason and a hash in the cache.
func (s *Service) noteIgnored(p Plan) {
	if len(p.Decision.Ignored) == 0 || p.ContainerID == "" {
		return
	}
	h := fnv.New64a()
	byReason := map[policy.IgnoredReason][]policy.Ignored{}
	for _, ig := range p.Decision.Ignored {
		h.Write([]byte(ig.String()))
		byReason[ig.Reason] = append(byReason[ig.Reason], ig)
	}
	if !s.store.noteIgnored(p.ContainerID, h.Sum64()) {
		return
	}
	for _, reason := range slices.Sorted(maps.Keys(byReason)) {
		igs := byReason[reason]
		n := 0
		for _, ig := range igs {
			n += 1 + ig.More // the policy lists a few of each reason and counts the rest
		}
		s.log.Warn("annotation ignored", "container", p.ContainerID, "pod", p.Workload.Namespace+"/"+p.Workload.PodName,
			"reason", string(reason), "count", n, "why", igs[0].String())
		s.metrics.annotationsIgnored(string(reason), n)
	}
}

// limits resolves the policy's device specs to MAJ:MIN, each on its own: a device
// this node lacks (one policy for every node) is reported and retried, and the
// others are applied. Two specs that land on one disk merge, the tightest value of
// each key winning.
func (s *Service) limits(io []policy.IOLimits) ([]cgroup.IOLimit, error) {
	var out []cgroup.IOLimit
	var errs []error
	for _, l := range io {
		if l.IsZero() {
			continue
		}
		dev, err := s.device(l.Device)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, cgroup.IOLimit{Device: dev, ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS})
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("%w: %w", ErrDeviceUnresolved, errors.Join(errs...))
	}
	if len(out) == 0 {
		return nil, err
	}
	return translate.MergeLimits(out), err
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

// ApplyContainer brings one container's cgroup to the policy.
func (s *Service) ApplyContainer(ctx context.Context, id string) (Plan, syncResult, error) {
	return s.applyContainer(ctx, id, nil)
}

// applyContainer brings one container's cgroup to the policy, with the decision
// already made for it in t, or a new one when t is nil.
func (s *Service) applyContainer(ctx context.Context, id string, t *target) (Plan, syncResult, error) {
	if t == nil {
		tt, err := s.containerTarget(ctx, id)
		if err != nil {
			return Plan{ContainerID: id}, "", s.tornDown(ctx, "container", id, err)
		}
		t = &tt
	}
	plan, err := s.planContainer(ctx, t, planOptions{})
	if err != nil {
		return plan, "", s.tornDown(ctx, "container", id, err)
	}
	return s.applyPlan(ctx, plan)
}

// applyPlan enforces a container's plan: the read-back and repair after start
// when the plan was made before it.
func (s *Service) applyPlan(ctx context.Context, plan Plan) (Plan, syncResult, error) {
	id := plan.ContainerID
	plan, result, err := s.enforcer.apply(plan, "container", id)
	s.watchConflicts(plan, func(ctx context.Context) error { _, _, err := s.ApplyContainer(ctx, id); return err })
	return plan, result, s.tornDown(ctx, "container", id, err)
}

// ApplyPod brings a pod's own cgroup to the policy (pod-scope budgets).
func (s *Service) ApplyPod(ctx context.Context, pod Pod) (Plan, syncResult, error) {
	plan, err := s.planPod(ctx, pod)
	if err != nil {
		return plan, "", s.tornDown(ctx, "pod", pod.ID, err)
	}
	plan, result, err := s.enforcer.apply(plan, "pod", pod.ID)
	s.watchConflicts(plan, func(ctx context.Context) error { _, _, err := s.ApplyPod(ctx, pod); return err })
	return plan, result, s.tornDown(ctx, "pod", pod.ID, err)
}

// Close releases the resolvers' connections.
func (s *Service) Close() error {
	if c, ok := s.store.resolver.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
