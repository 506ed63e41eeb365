// Package nriplugin is criguard's second front end: an NRI plugin that drives the
// engine (package criservice) from the runtime's own events, on containerd 2.x and
// CRI-O, with nothing in kubelet's path.
//
// The runtime holds one lock across every plugin call and closes a plugin that
// misses its deadline (2 s by default), skipping it from then on: so every
// handler answers fast, never fails the runtime's call, and never calls back
// into the runtime through anything that would reach NRI again. The work after a
// start, an update or a stop is waited for up to a second, then left to finish
// after the answer.
package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice"
)

// Engine is what the plugin drives: criservice.Service's events.
type Engine interface {
	Observe(pods []criservice.Pod, containers []criservice.Container)
	PodStarted(ctx context.Context, pod criservice.Pod)
	PodRemoved(id string)
	Creating(ctx context.Context, pod criservice.Pod, ct criservice.Container, res *runtimeapi.LinuxContainerResources) bool
	Created(ctx context.Context, pod criservice.Pod, ct criservice.Container)
	Starting(ctx context.Context, id string) *criservice.Start
	Started(ctx context.Context, id string, st *criservice.Start) error
	Updating(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) (*criservice.Update, bool)
	Updated(ctx context.Context, id string, u *criservice.Update)
	Stopped(ctx context.Context, id string)
	Removed(id string)
}

// DefaultSocket is where containerd and CRI-O serve NRI.
const DefaultSocket = api.DefaultSocketPath

// Options configure a Plugin. Engine is required.
type Options struct {
	Engine Engine
	// Socket is the runtime's NRI socket; empty: DefaultSocket.
	Socket string
	// Name and Index are how the runtime knows and orders the plugin ("10-criguard").
	Name, Index string
	// Reconcile asks for a reconcile pass (after each registration), without waiting.
	Reconcile func()
	// Retry is the pause between two attempts to reach the runtime; 0: one second.
	Retry  time.Duration
	Logger *slog.Logger
}

// Plugin is criguard as an NRI plugin.
type Plugin struct {
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	// starts and updates carry an event's decision from its first half to the
	// second (StartContainer → PostStartContainer, UpdateContainer → PostUpdate).
	starts  map[string]*criservice.Start
	updates map[string]*criservice.Update
	// live holds the containers created and not removed, with the resources
	// they were last given: what a reload's update starts from.
	live map[string]*api.LinuxResources
	// stub is the current connection's, nil while there is none.
	stub stub.Stub

	registered atomic.Bool
	// ctx is Run's: the work after an event outlives the event's call.
	ctx  context.Context
	work sync.WaitGroup
}

// New returns a Plugin.
func New(opts Options) (*Plugin, error) {
	if opts.Engine == nil {
		return nil, errors.New("nriplugin: Engine is required")
	}
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Name == "" {
		opts.Name = "criguard"
	}
	if opts.Index == "" {
		opts.Index = "10"
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.Reconcile == nil {
		opts.Reconcile = func() {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Plugin{opts: opts, log: opts.Logger, ctx: context.Background(),
		starts: map[string]*criservice.Start{}, updates: map[string]*criservice.Update{}, live: map[string]*api.LinuxResources{}}, nil
}

// Run registers with the runtime and serves its events until ctx ends. A runtime
// that is not there yet, restarts or drops the plugin is dialled again every
// Retry: the runtime hands over the full listing at each registration.
func (p *Plugin) Run(ctx context.Context) error {
	p.ctx = ctx
	defer p.work.Wait()
	failing := false
	for ctx.Err() == nil {
		err := p.runOnce(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil && !failing:
			p.log.Warn("NRI: not connected to the runtime; retrying", "socket", p.opts.Socket, "every", p.opts.Retry, "err", err)
			failing = true
		case err == nil:
			p.log.Warn("NRI: the runtime closed the connection; registering again", "socket", p.opts.Socket)
			failing = false
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.opts.Retry):
		}
	}
	return nil
}

// runOnce is one connection: it returns when the runtime closes it.
func (p *Plugin) runOnce(ctx context.Context) error {
	closed := make(chan struct{})
	s, err := stub.New(p, stub.WithSocketPath(p.opts.Socket), stub.WithPluginName(p.opts.Name), stub.WithPluginIdx(p.opts.Index),
		stub.WithLogger(nriLogger{p.log}), stub.WithOnClose(func() { close(closed) }))
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	p.stub = s
	p.mu.Unlock()
	p.registered.Store(true)
	p.log.Info("NRI: registered with the runtime", "socket", p.opts.Socket, "plugin", p.opts.Index+"-"+p.opts.Name,
		"runtime_nri", s.RuntimeNRIVersion(), "request_timeout", s.RequestTimeout())
	select {
	case <-closed:
	case <-ctx.Done():
		s.Stop()
	}
	p.registered.Store(false)
	p.mu.Lock()
	p.stub = nil
	p.mu.Unlock()
	return nil
}

// Ready is nil while the plugin is registered with the runtime.
func (p *Plugin) Ready() error {
	if !p.registered.Load() {
		return fmt.Errorf("not registered with the runtime's NRI socket %s", p.opts.Socket)
	}
	return nil
}

// Configure subscribes to every event the plugin handles.
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (api.EventMask, error) {
	p.log.Info("NRI: runtime", "name", runtime, "version", version)
	return 0, nil
}

// Synchronize is the listing the runtime hands over at registration: the engine
// learns it, the running containers' resources are brought to the policy in the
// reply, and a reconcile pass follows once the runtime has its answer.
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, containers []*api.Container) ([]*api.ContainerUpdate, error) {
	ps := make([]criservice.Pod, 0, len(pods))
	for _, pod := range pods {
		ps = append(ps, podFromNRI(pod))
	}
	cs := make([]criservice.Container, 0, len(containers))
	live := map[string]*api.LinuxResources{}
	for _, c := range containers {
		if c.GetState() != api.ContainerState_CONTAINER_CREATED && c.GetState() != api.ContainerState_CONTAINER_RUNNING {
			continue
		}
		cs = append(cs, containerFromNRI(c))
		live[c.GetId()] = c.GetLinux().GetResources()
	}
	p.opts.Engine.Observe(ps, cs)
	p.mu.Lock()
	p.live = live
	p.mu.Unlock()
	updates := p.tightenLive(ctx, "NRI synchronize")
	p.log.Info("NRI: synchronized", "pods", len(ps), "containers", len(cs), "updated", len(updates))
	p.opts.Reconcile()
	return updates, nil
}

// Shutdown is the runtime going away: Run registers again once it is back.
func (p *Plugin) Shutdown(context.Context) {
	p.log.Info("NRI: the runtime is shutting down")
}

// RunPodSandbox learns a pod and puts its pod budget on its cgroup.
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.opts.Engine.PodStarted(ctx, podFromNRI(pod))
	return nil
}

// RemovePodSandbox forgets a pod.
func (p *Plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.opts.Engine.PodRemoved(pod.GetId())
	return nil
}

// CreateContainer tightens the resources the runtime is about to write (io.max in
// unified on v2, pids, memory and cpu) and answers with what changed.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	po, ct := podFromNRI(pod), containerFromNRI(c)
	have := c.GetLinux().GetResources()
	before, res := toCRI(have), toCRI(have)
	var t tightening
	if p.opts.Engine.Creating(ctx, po, ct, res) {
		t = diff(before, res)
	}
	p.opts.Engine.Created(ctx, po, ct)
	p.remember(c.GetId(), t.applyTo(have))
	if t.empty() {
		return nil, nil, nil
	}
	p.log.Debug("NRI: creation adjusted", "container", c.GetId(), "pod", po.Namespace+"/"+po.Name, "fields", t.String())
	return t.adjustment(), nil, nil
}

// StartContainer writes the container's limits into its cgroup: the runtime has
// made it (containerd's task create, CRI-O's create) and the process has not run
// its first instruction yet.
func (p *Plugin) StartContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container) error {
	st := p.opts.Engine.Starting(ctx, c.GetId())
	p.mu.Lock()
	p.starts[c.GetId()] = st
	p.mu.Unlock()
	return nil
}

// PostStartContainer reads back and repairs what the start wrote, and reshares a
// v1 pod budget.
func (p *Plugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	id := c.GetId()
	p.mu.Lock()
	st := p.starts[id]
	delete(p.starts, id)
	p.mu.Unlock()
	p.after(func(ctx context.Context) {
		if err := p.opts.Engine.Started(ctx, id, st); err != nil {
			p.log.Warn("NRI: container start not confirmed", "container", id, "err", err)
		}
	})
	return nil
}

// UpdateContainer keeps an update of a running container from loosening its
// limits: a tightened update supersedes the one asked for.
func (p *Plugin) UpdateContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container, asked *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	id := c.GetId()
	u, t := p.updating(ctx, id, asked)
	p.mu.Lock()
	p.updates[id] = u
	p.mu.Unlock()
	given := t.applyTo(asked)
	p.remember(id, given)
	if t.empty() {
		return nil, nil
	}
	p.log.Debug("NRI: update tightened", "container", id, "fields", t.String())
	return []*api.ContainerUpdate{{ContainerId: id, Linux: &api.LinuxContainerUpdate{Resources: given}}}, nil
}

// PostUpdateContainer brings the container's cgroup back to its plan.
func (p *Plugin) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	id := c.GetId()
	p.mu.Lock()
	u := p.updates[id]
	delete(p.updates, id)
	p.mu.Unlock()
	p.after(func(ctx context.Context) { p.opts.Engine.Updated(ctx, id, u) })
	return nil
}

// StopContainer gives a stopped container's share of a v1 pod budget back.
func (p *Plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	id := c.GetId()
	p.forget(id, false)
	p.after(func(ctx context.Context) { p.opts.Engine.Stopped(ctx, id) })
	return nil, nil
}

// RemoveContainer forgets a container.
func (p *Plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.forget(c.GetId(), true)
	p.opts.Engine.Removed(c.GetId())
	return nil
}

// PolicyChanged brings every live container's resources to a new policy through
// the runtime's own update path (NRI's UpdateContainers). containerd applies the
// memory, CPU, hugepages and unified of an update (so pids.max travels in unified
// on v2), CRI-O the whole set with runc update, pids limit included (so the
// update carries the policy's, or runc would write back the creation's); what
// criguard writes to files itself (blkio and pids.max on v1) is the reconcile
// pass's. Without a connection the next registration's Synchronize does it.
func (p *Plugin) PolicyChanged(ctx context.Context) {
	p.mu.Lock()
	s := p.stub
	p.mu.Unlock()
	if s == nil {
		return
	}
	updates := p.tightenLive(ctx, "policy reload")
	if len(updates) == 0 {
		return
	}
	failed, err := s.UpdateContainers(updates)
	for _, f := range failed {
		p.log.Warn("NRI: runtime refused an update to the new policy", "container", f.GetContainerId())
	}
	if err != nil {
		p.log.Warn("NRI: updates to the new policy not applied; the next registration retries", "err", err)
		return
	}
	p.log.Info("NRI: running containers updated to the new policy", "containers", len(updates)-len(failed))
}

// tightenLive is an update for each live container whose resources are looser
// than the policy.
func (p *Plugin) tightenLive(ctx context.Context, why string) []*api.ContainerUpdate {
	p.mu.Lock()
	live := maps.Clone(p.live)
	p.mu.Unlock()
	var updates []*api.ContainerUpdate
	for id, have := range live {
		_, t := p.updating(ctx, id, have)
		if t.empty() {
			continue
		}
		given := t.applyTo(have)
		p.remember(id, given)
		p.log.Debug("NRI: running container tightened", "why", why, "container", id, "fields", t.String())
		updates = append(updates, &api.ContainerUpdate{ContainerId: id, Linux: &api.LinuxContainerUpdate{Resources: given}, IgnoreFailure: true})
	}
	return updates
}

// updating asks the engine what an update of the container to have must become: the
// engine's event, and the fields it tightened (pids included, which CRI lacks).
func (p *Plugin) updating(ctx context.Context, id string, have *api.LinuxResources) (*criservice.Update, tightening) {
	before, res := toCRI(have), toCRI(have)
	u, changed := p.opts.Engine.Updating(ctx, id, res)
	var t tightening
	if changed {
		t = diff(before, res)
	}
	if u != nil {
		t.tightenPids(have, u.PidsMax)
	}
	return u, t
}

func (p *Plugin) remember(id string, r *api.LinuxResources) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live[id] = r
}

// forget drops what the plugin holds of a container: a stopped one keeps no
// live resources, a removed one nothing at all.
func (p *Plugin) forget(id string, removed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, id)
	if removed {
		delete(p.starts, id)
		delete(p.updates, id)
	}
}

// afterTimeout bounds the work after an event: the engine bounds each runtime
// call and filesystem walk on its own, this only keeps a stuck one from piling up.
const afterTimeout = 30 * time.Second

// waitBudget is how long an event's call waits for its second half before
// answering: within it the runtime's reply means the limits are confirmed, as
// through the proxy; past it the work goes on after the answer, far from the
// runtime's deadline (2 s by default), which would drop the plugin.
const waitBudget = time.Second

// after runs the second half of an event, and returns when it is done or after
// waitBudget, whichever comes first.
func (p *Plugin) after(f func(context.Context)) {
	ctx := p.ctx
	done := make(chan struct{})
	p.work.Go(func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterTimeout)
		defer cancel()
		f(ctx)
	})
	select {
	case <-done:
	case <-time.After(waitBudget):
	}
}
