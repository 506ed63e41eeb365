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
	"strings"
	"sync"
	"sync/atomic"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

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

type planOptions struct {
	// create makes a missing cgroupfs directory (before StartContainer: runc joins
	// a directory that exists, with the limits already in it).
	create bool
	// starting counts the container among its pod's running ones (v1 shares).
	starting bool
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

// target is a container as the policy sees it, with the one decision made for it
// per event: a call carries it from before the runtime's reply to after it.
type target struct {
	Container Container
	Pod       Pod
	Decision  policy.Decision
}

// planner turns a workload and the one decision made for it into a plan: the
// cgroup directory, the devices resolved (volumes, writable layer, dm/md/loop
// chains), v1's share of a pod budget, the burst and protection loops' limits in
// force, and the keys a systemd unit keeps. It reads cgroups and the ownership
// record; it writes nothing but a missing cgroupfs directory before a start.
type planner struct {
	store   *store
	io      cgroup.IO
	devices DeviceResolver
	chains  ChainResolver
	// owned is the enforcer's record, read to tell criguard's unit entries from the
	// operator's (yieldToUnit).
	owned *ownership
	// policy is the policy in force; decider is policy.Policy.Decide, counted by tests.
	policy  func() *policy.Policy
	decider func(*policy.Policy, policy.Workload) policy.Decision

	// splitPodBudget is set on cgroup v1, where blk-throttle is not
	// hierarchical: a limit on the pod's cgroup would bind none of its
	// containers, so each running container gets an equal share instead.
	splitPodBudget bool

	systemdRoot   string
	unitLimits    UnitLimits
	conflictsSeen sync.Map // dir + conflict → logged once
	preStart      preStart
	runtimeName   atomic.Pointer[string] // the runtime's Version name, once it answered (wantsDropIns)

	resolvedMu sync.Mutex
	resolved   map[string]cgroup.Device // policy device spec → MAJ:MIN

	burst       atomic.Pointer[bursts]     // nil: no burst loop (burst.go)
	protection  atomic.Pointer[protection] // nil: no protection loop (protect.go)
	classLimits sync.Map                   // container ID → its plan's ClassLimits (inforce.go)
	// burstBooked and protectBooked wake the loops, which sleep while they have
	// nothing to act on: a container is booked that was not.
	burstBooked, protectBooked chan struct{}

	log     *slog.Logger
	metrics *Metrics
}

// containerTarget looks a container up and decides on it. Its cgroup path is
// learned first when the pod's parent is not known, since the QoS class the policy
// matches is read from them.
func (s *planner) containerTarget(ctx context.Context, id string) (target, error) {
	ct, pod, err := s.store.lookup(ctx, id)
	if err != nil {
		return target{Container: Container{ID: id}}, err
	}
	if pod.CgroupParent == "" {
		if _, err := s.store.cgroupsPath(ctx, &ct); err != nil {
			return target{Container: ct, Pod: pod}, err
		}
	}
	return s.decideFor(pod, ct), nil
}

func (s *planner) decideFor(pod Pod, ct Container) target {
	d := s.decideOnce(ct.decided, workload(pod, &ct), func(d *decided) { s.store.setContainerDecision(ct.ID, d) })
	return target{Container: ct, Pod: pod, Decision: d}
}

// decided is a decision with the policy and the workload it was made on. Decide is
// a function of those two alone, and a pod's labels, annotations and cgroup parent,
// a container's name and image, never change while they run: the decision stands
// until the policy is reloaded or the workload reads differently (a cgroup parent
// learned late). So a container start decides once, for the container: its pod's
// decision, made at RunPodSandbox, and on v1 its siblings', made at their starts,
// are not made again, nor are the decisions of a reconcile pass that finds nothing new.
type decided struct {
	policy   *policy.Policy
	workload policy.Workload
	decision policy.Decision
}

// decideOnce returns the decision known for w under the policy in force, or makes
// it and has it remembered.
func (s *planner) decideOnce(known *decided, w policy.Workload, remember func(*decided)) policy.Decision {
	pol := s.policy()
	if known != nil && known.policy == pol && sameWorkload(known.workload, w) {
		return known.decision
	}
	d := s.decider(pol, w)
	remember(&decided{policy: pol, workload: w, decision: d})
	return d
}

func sameWorkload(a, b policy.Workload) bool {
	return a.Namespace == b.Namespace && a.PodName == b.PodName && a.PodUID == b.PodUID && a.QoS == b.QoS &&
		a.ContainerName == b.ContainerName && a.Image == b.Image &&
		maps.Equal(a.PodLabels, b.PodLabels) && maps.Equal(a.PodAnnotations, b.PodAnnotations)
}

// planContainer decides what a container's own cgroup must hold, from the
// decision already made for it. It fills in t's cgroup once resolved.
func (s *planner) planContainer(ctx context.Context, t *target, po planOptions) (Plan, error) {
	ct, id := &t.Container, t.Container.ID
	plan := Plan{ContainerID: id, PodID: ct.PodID, Workload: workload(t.Pod, ct), Decision: t.Decision}
	if ct.Dir == "" {
		raw, err := s.store.cgroupsPath(ctx, ct)
		if err != nil {
			return plan, err
		}
		dir, err := translate.CgroupDir(s.io.Mount(), raw)
		if err == nil && po.create && translate.IsCgroupfsPath(raw) {
			// A systemd unit is left to systemd: there the limits travel in the
			// CreateContainer request.
			err = cgroup.MakeDir(s.io.Mount(), dir)
		}
		if err == nil {
			err = cgroup.CheckDir(s.io.Mount(), dir)
		}
		if errors.Is(err, fs.ErrNotExist) && po.starting && !translate.IsCgroupfsPath(raw) && s.wantsDropIns(ctx) {
			// systemd makes the scope at the start (dropin.go); its slice is there.
			err = cgroup.CheckDir(s.io.Mount(), filepath.Dir(dir))
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
func (s *planner) planContainerID(ctx context.Context, id string) (Plan, error) {
	t, err := s.containerTarget(ctx, id)
	if err != nil {
		return Plan{ContainerID: id, PodID: t.Container.PodID}, err
	}
	return s.planContainer(ctx, &t, planOptions{})
}

// podScopedRunning counts the pod's running containers whose own decision is the
// pod budget: on v1 they split it. Containers with a decision of their own do not.
func (s *planner) podScopedRunning(ctx context.Context, podID, self string, starting bool) (int, error) {
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

// planPod decides what a pod's own cgroup must hold: a pod-scope budget or nothing.
func (s *planner) planPod(ctx context.Context, pod Pod) (Plan, error) {
	plan := Plan{PodID: pod.ID, Workload: workload(pod, nil)}
	plan.Decision = s.decideOnce(pod.decided, plan.Workload, func(d *decided) { s.store.setPodDecision(pod.ID, d) })
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
	dir, err := translate.PodCgroupDir(s.io.Mount(), pod.CgroupParent)
	if err == nil {
		err = cgroup.CheckDir(s.io.Mount(), dir)
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
func (s *planner) noteIgnored(p Plan) {
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
func (s *planner) limits(io []policy.IOLimits) ([]cgroup.IOLimit, error) {
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
func (s *planner) device(spec string) (cgroup.Device, error) {
	s.resolvedMu.Lock()
	dev, ok := s.resolved[spec]
	s.resolvedMu.Unlock()
	if ok {
		return dev, nil
	}
	dev, err := s.devices.Resolve(spec)
	if err != nil {
		return dev, fmt.Errorf("device %q: %w", spec, err)
	}
	s.resolvedMu.Lock()
	s.resolved[spec] = dev
	s.resolvedMu.Unlock()
	return dev, nil
}

// forgetDevices drops resolved devices, e.g. after a policy reload.
func (s *planner) forgetDevices() {
	s.resolvedMu.Lock()
	clear(s.resolved)
	s.resolvedMu.Unlock()
}

// planLimits resolves a decision's io blocks into the plan: devices once, selectors
// for each of cts (the container, or every container of a pod for a pod budget). What
// does not resolve is reported in plan.Unresolved, and the rest is applied.
func (s *planner) planLimits(ctx context.Context, plan *Plan, cts []Container) {
	var fixed, selectors []policy.IOLimits
	for _, l := range plan.Decision.IO {
		if l.SelectsMounts() {
			selectors = append(selectors, l)
		} else {
			fixed = append(fixed, l)
		}
	}
	limits, err := s.limits(fixed)
	if len(selectors) == 0 {
		plan.Limits, plan.Unresolved = limits, err
		return
	}
	more, disks, selErr := s.mountLimits(ctx, selectors, cts)
	plan.Mounts = disks
	if all := append(limits, more...); len(all) > 0 {
		plan.Limits = translate.MergeLimits(all)
	}
	switch {
	case err != nil && selErr != nil:
		plan.Unresolved = errors.Join(err, selErr)
	case err != nil:
		plan.Unresolved = err
	case selErr != nil:
		plan.Unresolved = selErr
	}
}

// mountLimits finds the disks the selectors name for each container: its writable
// layer, its volumes. A filesystem with no block device (tmpfs, NFS, FUSE) is skipped
// with its reason; a path that cannot be resolved now is an error, retried.
func (s *planner) mountLimits(ctx context.Context, selectors []policy.IOLimits, cts []Container) ([]cgroup.IOLimit, []MountDisk, error) {
	var limits []cgroup.IOLimit
	var disks []MountDisk
	var errs []error
	seen := map[string]bool{}
	add := func(l policy.IOLimits, md MountDisk) {
		key := md.Selector + "\x00" + md.HostPath
		if seen[key] {
			return // a pod's containers share its volumes
		}
		seen[key] = true
		chain, err := s.chains.Chain(ctx, md.HostPath)
		switch {
		case errors.Is(err, cgroup.ErrNoBlockDevice):
			md.Skipped = err.Error()
		case err != nil:
			md.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s %s: %w", md.Kind, md.HostPath, err))
		default:
			md.Chain, md.Device = chain.String(), chain.Disk.String()
			limits = append(limits, cgroup.IOLimit{Device: chain.Disk, ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS})
		}
		disks = append(disks, md)
	}
	for _, l := range selectors {
		if l.IsZero() {
			continue
		}
		for _, ct := range cts {
			if l.Device == policy.DeviceRootfs {
				path, err := s.store.rootfsOf(ctx, ct)
				if err != nil {
					disks = append(disks, MountDisk{Kind: "rootfs", Selector: l.Target(), Error: err.Error()})
					errs = append(errs, fmt.Errorf("writable layer of %s: %w", ct.ID, err))
					continue
				}
				add(l, MountDisk{Kind: "rootfs", HostPath: path, Selector: l.Target()})
				continue
			}
			mounts, err := s.store.mountsOf(ctx, ct)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, m := range mounts {
				kp := parseKubeletPath(m.HostPath)
				if kp.plumbing {
					continue
				}
				if _, ok := l.MatchVolume(kp.volume, m.ContainerPath); ok {
					add(l, MountDisk{Kind: "volume", Volume: kp.volume, Plugin: kp.plugin,
						ContainerPath: m.ContainerPath, HostPath: m.HostPath, Selector: l.Target()})
				}
			}
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("%w: %w", ErrDeviceUnresolved, errors.Join(errs...))
	}
	return limits, disks, err
}

// planWeights fills plan.Weights from its decision: only on the cgroup the decision's
// scope names (a pod-scope weight is the pod's, never its containers').
func (s *planner) planWeights(plan *Plan) {
	d := plan.Decision
	if d.HandsOff || plan.Dir == "" || (plan.ContainerID == "") != (d.Scope == policy.ScopePod) {
		return
	}
	var weights []cgroup.IOWeight
	var errs []error
	for _, l := range d.IO {
		if l.Weight == 0 || l.SelectsMounts() {
			continue
		}
		dev, err := s.device(l.Device)
		if err != nil {
			if l.IsZero() { // a block with limits reported it already
				errs = append(errs, err)
			}
			continue
		}
		weights = append(weights, cgroup.IOWeight{Device: dev, Weight: l.Weight})
	}
	plan.Weights = translate.MergeWeights(weights)
	if len(errs) > 0 {
		plan.Unresolved = errors.Join(plan.Unresolved, fmt.Errorf("%w: %w", ErrDeviceUnresolved, errors.Join(errs...)))
	}
}

// yieldToUnit takes out of the plan what the cgroup's own systemd unit sets, reports
// each conflict once, and plans what to hand to the unit (cgroup v2).
func (s *planner) yieldToUnit(plan *Plan) {
	plan.unitEntries = nil
	unit := systemdUnit(plan.Dir)
	if unit == "" {
		return
	}
	owned, handed := s.owned.held(plan.Dir).Limits, s.owned.handedIn(plan.Dir)
	if len(plan.Limits) == 0 && len(owned) == 0 && len(handed) == 0 {
		return // nothing of criguard's here, nor to hand over
	}
	var ours ownEntry
	handing := s.unitLimits != nil && s.io.Version() == 2 && !plan.ScopeToBe
	if handing {
		ours = ownedEntries(owned, handed)
	}
	r, err := unitIOLimits(s.systemdRoot, unit, s.devices, ours)
	if err != nil {
		s.log.Debug("cannot read the unit's I/O properties", "unit", unit, "err", err)
		return
	}
	plan.Limits, plan.Conflicts = yieldToSystemd(plan.Limits, nonZero(r.set), unit, r.from)
	if handing && !plan.Decision.HandsOff && (len(r.paths) > 0 || len(r.handedPaths) > 0) {
		plan.unitEntries = r
	}
	for _, c := range plan.Conflicts {
		if _, seen := s.conflictsSeen.LoadOrStore(plan.Dir+"\x00"+c, true); !seen {
			s.log.Warn("limit conflicts with a systemd unit property", "dir", plan.Dir, "conflict", c)
			s.metrics.conflict("systemd")
		}
	}
}

// wantsDropIns reports whether starts get pre-start drop-ins: the node runs systemd on
// v2 and the runtime loses the unified io.max (cri-dockerd names itself "docker").
// A runtime that does not answer Version gets them, and is asked again next time.
func (s *planner) wantsDropIns(ctx context.Context) bool {
	if !s.preStart.enabled {
		return false
	}
	if name := s.runtimeName.Load(); name != nil {
		return !runtimeKeepsUnified(*name)
	}
	ctx, cancel := context.WithTimeout(ctx, s.store.timeout)
	defer cancel()
	v, err := s.store.runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return true
	}
	name := v.GetRuntimeName()
	s.runtimeName.Store(&name)
	keeps := runtimeKeepsUnified(name)
	if !keeps {
		s.log.Info("the runtime drops the create request's io.max: limits reach systemd scopes through pre-start drop-ins", "runtime", name)
	}
	return !keeps
}

// inForce lays the loops' limits in force over the class's limits (ClassLimits):
// the burst loop's raised keys, then the protection loop's lowered ones. It starts
// from ClassLimits each time, so that it may run again under the cgroup's write
// lock with what the loops decided since the plan was made.
func (s *planner) inForce(p *Plan, starting bool) {
	p.Limits = slices.Clone(p.ClassLimits)
	s.burstInForce(p, starting)
	s.protectInForce(p)
	s.noteClassLimits(*p)
}

// refreshInForce is inForce for the enforcer, under the cgroup's write lock: a plan
// made before a loop's tick writes that tick's limits, not the ones before it.
func (s *planner) refreshInForce(p *Plan) {
	if p.ContainerID == "" || p.Decision.HandsOff || !s.loopsHold(p.ContainerID) {
		return
	}
	s.inForce(p, false)
	s.yieldToUnit(p) // as planContainer did after it
}

// loopsHold reports whether the burst or protection loop holds limits in force for
// the container: only then may they have moved since its plan was made.
func (s *planner) loopsHold(id string) bool {
	if b := s.burst.Load(); b != nil {
		b.mu.Lock()
		_, ok := b.targets[id]
		b.mu.Unlock()
		if ok {
			return true
		}
	}
	if pr := s.protection.Load(); pr != nil {
		pr.mu.Lock()
		_, ok := pr.yields[id]
		pr.mu.Unlock()
		return ok
	}
	return false
}

// burstInForce books the plan's bursting keys and lays the limits in force over its
// limits. Only a container's own cgroup bursts (the policy refuses bursts in
// pod-scope rules); starting marks a container whose buckets start full.
func (s *planner) burstInForce(p *Plan, starting bool) {
	b := s.burst.Load()
	if b == nil || p.ContainerID == "" || p.Dir == "" {
		return
	}
	t := burst.Target{Container: p.ContainerID, Dir: p.Dir, Fresh: starting}
	if !p.Decision.HandsOff && p.Decision.Scope != policy.ScopePod {
		t.Lines = s.burstLines(p.Decision.IO)
	}
	b.mu.Lock()
	if len(t.Lines) == 0 {
		delete(b.targets, p.ContainerID)
		b.mu.Unlock()
		return
	}
	old, booked := b.targets[p.ContainerID]
	if booked && old.Fresh {
		t.Fresh = true // kept until the runner made its buckets
	}
	b.targets[p.ContainerID] = t
	b.mu.Unlock()
	if !booked {
		signal(s.burstBooked)
	}
	p.Limits = b.ctl.LimitsInForce(t, p.ClassLimits)
}

// signal wakes a sleeping loop without blocking: one pending wake-up is enough.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// burstLines resolves the devices of the decision's bursting keys.
func (s *planner) burstLines(io []policy.IOLimits) []burst.Line {
	var lines []burst.Line
	for _, l := range io {
		keys := l.BurstKeys()
		if len(keys) == 0 {
			continue
		}
		dev, err := s.device(l.Device)
		if err != nil {
			continue // reported by the plan's own resolution
		}
		for _, k := range keys {
			lines = append(lines, burst.Line{Device: dev, Kind: burstKind(k.Key),
				Spec: burst.Spec{Sustained: k.Sustained, Burst: k.Rate, Credit: k.Credit}})
		}
	}
	return lines
}

// protectInForce books the plan's protected devices and yielding lines, and lays
// the yielding lines' limits in force over its limits.
func (s *planner) protectInForce(p *Plan) {
	pr := s.protection.Load()
	if pr == nil {
		return
	}
	protected, yields := s.protectionLines(p)
	pr.mu.Lock()
	_, wasProtected := pr.protected[p.ContainerID]
	_, yielded := pr.yields[p.ContainerID]
	setOrDelete(pr.protected, p.ContainerID, protected)
	setOrDelete(pr.yields, p.ContainerID, yields)
	pr.mu.Unlock()
	if (len(protected) > 0 && !wasProtected) || (len(yields) > 0 && !yielded) {
		signal(s.protectBooked)
	}
	p.Limits = pr.limitsInForce(yields, p.Limits)
}

// protectionLines resolves the decision's protected devices and yielding keys.
// Only a container's own cgroup takes part (the policy refuses protection in
// pod-scope rules).
func (s *planner) protectionLines(p *Plan) ([]protect.Protected, []protect.YieldLine) {
	if p.Decision.HandsOff || p.Decision.Scope == policy.ScopePod || p.ContainerID == "" || p.Dir == "" {
		return nil, nil
	}
	who := p.Workload.Namespace + "/" + p.Workload.PodName
	var protected []protect.Protected
	var yields []protect.YieldLine
	for _, l := range p.Decision.IO {
		if l.Protect.IsZero() && l.Yield.IsZero() {
			continue
		}
		dev, err := s.device(l.Device)
		if err != nil {
			continue // reported by the plan's own resolution
		}
		if !l.Protect.IsZero() {
			protected = append(protected, protect.Protected{Container: p.ContainerID, Dir: p.Dir, Who: who, Device: dev, Target: l.Protect.PressureSomeAvg10})
		}
		for _, k := range l.YieldKeys() {
			kind := protect.WriteBPS
			if k.Key == policy.KeyReadBPS {
				kind = protect.ReadBPS
			}
			yields = append(yields, protect.YieldLine{Container: p.ContainerID, Who: who, Device: dev, Kind: kind,
				Floor: k.Floor, Ceiling: k.Ceiling, Capped: k.Capped})
		}
	}
	return protected, yields
}

// noteClassLimits keeps a container's class limits for SampleUsage, which plans
// nothing (it costs file reads only).
func (s *planner) noteClassLimits(p Plan) {
	if p.ContainerID != "" {
		// Not nil even when empty: known to have none.
		s.classLimits.Store(p.ContainerID, append([]cgroup.IOLimit{}, p.ClassLimits...))
	}
}

// classLimitsOf is what noteClassLimits kept for a container.
func (s *planner) classLimitsOf(id string) ([]cgroup.IOLimit, bool) {
	v, ok := s.classLimits.Load(id)
	if !ok {
		return nil, false
	}
	return v.([]cgroup.IOLimit), true
}

// forget drops what the planner noted of a removed container (id) or cgroup (dir):
// a node starts containers without end, and the notes must not grow with them.
func (s *planner) forget(id, dir string) {
	if id != "" {
		s.classLimits.Delete(id)
	}
	if dir != "" {
		s.conflictsSeen.Range(func(k, _ any) bool {
			if strings.HasPrefix(k.(string), dir+"\x00") {
				s.conflictsSeen.Delete(k)
			}
			return true
		})
	}
}

// forgetClassLimits drops the class limits of containers not in live.
func (s *planner) forgetClassLimits(live map[string]bool) {
	s.classLimits.Range(func(k, _ any) bool {
		if !live[k.(string)] {
			s.classLimits.Delete(k)
		}
		return true
	})
}
