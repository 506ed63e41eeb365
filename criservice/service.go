// Package criservice is criguard's engine and its CRI front end: the front end
// decodes the few calls that matter (CRIHooks); the engine (Service) keeps pod and
// container metadata (store), decides and plans (planner), writes the limits and
// keeps the record of them (enforcer), and answers operators (Reporter).
// docs/ARCHITECTURE.md draws them.
package criservice

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
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
	// ReadBackMaxAge, when set, has the cgroups' limit files watched with inotify:
	// a pass reads back only the limits written since the last read or read longer
	// ago than this (cgroup.LimitWatch), and a write by another lets the reconciler
	// read them again at once (LimitsChanged). Zero: every pass reads every file.
	ReadBackMaxAge time.Duration
	Logger         *slog.Logger
	Metrics        *Metrics
}

// Service is the engine: it takes a front end's events and brings each cgroup to the
// policy through the store, the planner and the enforcer.
type Service struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	store   *store
	// enforcer is the one writer of limits and keeper of the ownership record.
	enforcer *enforcer
	// settings reads and writes pids, cpu and memory files, for this host's cgroups.
	settings cgroup.Settings

	// planner turns a workload and its decision into a plan.
	planner *planner
	// reporter answers explain, status, top and the per-workload metrics.
	reporter *Reporter

	// conflicted holds, by cgroup dir, how to apply again a container or pod whose own
	// systemd unit shares a disk with criguard's limits (RecheckConflicted).
	conflicted sync.Map // dir → func(context.Context) error
	// conflictRecorded wakes the recheck loop, which sleeps while nothing is conflicted.
	conflictRecorded chan struct{}

	// resourcesStale is set by a reload until a pass brought running containers'
	// pids, memory and cpu to the new policy.
	resourcesStale atomic.Bool

	// limitWatch keeps the limits read back until they are written; nil: unwatched.
	limitWatch *cgroup.LimitWatch
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
	var watch *cgroup.LimitWatch
	if opts.ReadBackMaxAge > 0 {
		var warned atomic.Bool
		unwatched := func(dir string, err error) {
			if !warned.Swap(true) {
				opts.Logger.Warn("cannot watch a cgroup's limit files; it and any other such are read on every pass (see fs.inotify.max_user_watches); logged once", "dir", dir, "err", err)
			}
		}
		w, err := cgroup.NewLimitWatch(opts.IO, opts.ReadBackMaxAge, unwatched)
		if err != nil {
			opts.Logger.Warn("cannot watch the cgroups' limit files; every pass reads them all", "err", err)
		} else {
			watch, opts.IO = w, w
			opts.Metrics.watchLimits(w)
		}
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
	enforcer := &enforcer{io: opts.IO, watch: watch, owned: owned, dryRun: opts.DryRun, log: opts.Logger, metrics: opts.Metrics,
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
	store := &store{cache: newCache(), runtime: opts.Runtime, resolver: opts.Resolver, timeout: opts.ApplyTimeout, log: opts.Logger}
	planner := &planner{store: store, io: opts.IO, devices: opts.Devices, chains: opts.Chains, owned: owned,
		policy: opts.Policy, decider: (*policy.Policy).Decide, splitPodBudget: !opts.IO.Hierarchical(),
		systemdRoot: opts.SystemdRoot, unitLimits: opts.UnitLimits, preStart: pre,
		resolved: map[string]cgroup.Device{}, log: opts.Logger, metrics: opts.Metrics,
		burstBooked: make(chan struct{}, 1), protectBooked: make(chan struct{}, 1)}
	enforcer.refresh = planner.refreshInForce
	s := &Service{
		opts:     opts,
		log:      opts.Logger,
		metrics:  opts.Metrics,
		store:    store,
		planner:  planner,
		enforcer: enforcer,
		settings: settings,

		conflictRecorded: make(chan struct{}, 1),
		limitWatch:       watch,
	}
	s.reporter = &Reporter{store: store, planner: planner, enforcer: enforcer, io: opts.IO, settings: settings,
		stateDir: opts.StateDir, log: opts.Logger}
	return s, nil
}

// ApplyContainer brings one container's cgroup to the policy.
func (s *Service) ApplyContainer(ctx context.Context, id string) (Plan, syncResult, error) {
	return s.applyContainer(ctx, id, nil)
}

// applyContainer brings one container's cgroup to the policy, with the decision
// already made for it in t, or a new one when t is nil.
func (s *Service) applyContainer(ctx context.Context, id string, t *target) (Plan, syncResult, error) {
	if t == nil {
		tt, err := s.planner.containerTarget(ctx, id)
		if err != nil {
			return Plan{ContainerID: id}, "", s.store.tornDown(ctx, "container", id, err)
		}
		t = &tt
	}
	plan, err := s.planner.planContainer(ctx, t, planOptions{})
	if err != nil {
		return plan, "", s.store.tornDown(ctx, "container", id, err)
	}
	return s.applyPlan(ctx, plan)
}

// applyPlan enforces a container's plan: the read-back and repair after start
// when the plan was made before it.
func (s *Service) applyPlan(ctx context.Context, plan Plan) (Plan, syncResult, error) {
	id := plan.ContainerID
	plan, result, err := s.enforcer.apply(plan, "container", id)
	s.watchConflicts(plan, func(ctx context.Context) error { _, _, err := s.ApplyContainer(ctx, id); return err })
	return plan, result, s.store.tornDown(ctx, "container", id, err)
}

// ApplyPod brings a pod's own cgroup to the policy (pod-scope budgets).
func (s *Service) ApplyPod(ctx context.Context, pod Pod) (Plan, syncResult, error) {
	plan, err := s.planner.planPod(ctx, pod)
	if err != nil {
		return plan, "", s.store.tornDown(ctx, "pod", pod.ID, err)
	}
	plan, result, err := s.enforcer.apply(plan, "pod", pod.ID)
	s.watchConflicts(plan, func(ctx context.Context) error { _, _, err := s.ApplyPod(ctx, pod); return err })
	return plan, result, s.store.tornDown(ctx, "pod", pod.ID, err)
}

// Reporter is what explain, status, top and the per-workload metrics ask.
func (s *Service) Reporter() *Reporter { return s.reporter }

// Close releases the watch on the limit files and the resolvers' connections.
func (s *Service) Close() error {
	if s.limitWatch != nil {
		s.limitWatch.Close()
	}
	if c, ok := s.store.resolver.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// LimitsChanged is signalled when limits read back were written by another than
// criguard, so that a pass reads them again now; nil (never) when unwatched.
func (s *Service) LimitsChanged() <-chan struct{} {
	if s.limitWatch == nil {
		return nil
	}
	return s.limitWatch.Changed()
}
