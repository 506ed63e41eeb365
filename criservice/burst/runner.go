package burst

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strconv"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/internal/atomicfile"
	"github.com/criguard/criguard/internal/tickloop"
)

// Source lists the running containers whose limits burst.
type Source interface {
	BurstTargets() []Target
}

// Enforcer brings one container's cgroup to its plan with the limits in force the
// Controller gives: it writes only the lines criguard owns, and records them.
type Enforcer interface {
	EnforceInForce(ctx context.Context, container string) error
}

// StatsReader reads a cgroup's I/O counters (cgroup.IO's Stats: v2 io.stat, v1
// blkio.throttle.io_service_bytes and io_serviced).
type StatsReader func(dir string) ([]cgroup.IOStat, error)

// Defaults of the runner.
const (
	DefaultInterval = time.Second
	// saveEvery ticks the state is saved even when no limit changed: a restart
	// charges the counters' growth since, so a late save never grants more, it
	// only forgets refill.
	saveEvery = 10
	// recheckAfter ticks a container whose limit changed is enforced once more: a
	// reconcile pass that planned it before the change and wrote after is undone.
	recheckAfter = 10
	// restoredGrace is how long credit restored for containers not seen yet is
	// kept (the first reconcile pass names them).
	restoredGrace = 5 * time.Minute
)

// RunnerOptions configure a Runner. Controller, Source, Enforcer and Stats are required.
type RunnerOptions struct {
	Controller *Controller
	Source     Source
	Enforcer   Enforcer
	Stats      StatsReader
	// StatePath is where the credit left is saved; empty: not saved.
	StatePath string
	Interval  time.Duration
	Logger    *slog.Logger
	Metrics   *Metrics
	// Wake is signalled when a container is booked for bursting
	// (criservice.Service.BurstBooked). With it, a runner that has nothing to do
	// stops ticking until it is signalled: no target, no bucket, no restored credit,
	// nothing to retry, and the state on disk current. nil: it ticks on.
	Wake <-chan struct{}
}

// Runner is the burst loop: each tick it samples every target's counters, steps
// its buckets and writes the limits in force that changed.
type Runner struct {
	opts    RunnerOptions
	log     *slog.Logger
	last    time.Time
	ticks   int
	started time.Time
	// pending holds containers to enforce at a tick: a failed write is retried
	// on the next one, a change is checked again recheckAfter ticks later.
	pending    map[string]int
	statErrors map[string]bool  // containers whose unreadable counters were logged
	targets    int              // the last tick's
	state      atomicfile.Saver // the credit left, at StatePath
}

// NewRunner returns a runner.
func NewRunner(opts RunnerOptions) (*Runner, error) {
	if opts.Controller == nil || opts.Source == nil || opts.Enforcer == nil || opts.Stats == nil {
		return nil, errors.New("burst: Controller, Source, Enforcer and Stats are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{opts: opts, log: opts.Logger, pending: map[string]int{}, statErrors: map[string]bool{}, state: atomicfile.Saver{Path: opts.StatePath}}, nil
}

// Run ticks until ctx is done, then saves the credit left. While nothing bursts
// it sleeps until Wake. The pause is measured by no bucket: none exists while it
// sleeps, and a new bucket takes no time since the last tick.
func (r *Runner) Run(ctx context.Context) {
	tickloop.Run(ctx, tickloop.Loop{Interval: r.opts.Interval, Wake: r.opts.Wake, Tick: r.Tick, Idle: r.idle, Stop: func() { r.save() }})
}

// Tick is one pass: the time since the last one is measured, not assumed, so a
// late tick earns and charges what really passed.
func (r *Runner) Tick(ctx context.Context, now time.Time) {
	start := time.Now()
	if r.started.IsZero() {
		r.started = now
	}
	var dt time.Duration
	if !r.last.IsZero() {
		dt = now.Sub(r.last)
	}
	r.last = now
	r.ticks++
	ctl := r.opts.Controller
	targets := r.opts.Source.BurstTargets()
	r.targets = len(targets)
	live := make(map[string]bool, len(targets))
	changedAny := false
	for _, t := range targets {
		stats, err := r.opts.Stats(t.Dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !r.statErrors[t.Container] {
				r.log.Warn("burst: cannot read the container's I/O counters; its limit in force stays", "container", t.Container, "dir", t.Dir, "err", err)
				r.statErrors[t.Container] = true
			}
			live[t.Container] = !errors.Is(err, fs.ErrNotExist) // gone: its buckets go
			continue
		}
		delete(r.statErrors, t.Container)
		live[t.Container] = true
		changes := ctl.Observe(t, stats, dt)
		for _, ch := range changes {
			r.log.Info("burst: limit in force changed", "container", ch.Key.Container, "device", ch.Key.Device.String(),
				"key", ch.Key.Kind.String(), "from", formatLimit(ch.From), "to", formatLimit(ch.To),
				"reason", string(ch.Reason), "credit_left", int64(ch.Credit))
			r.opts.Metrics.changed(ch.Reason)
		}
		if len(changes) > 0 {
			changedAny = true
			r.pending[t.Container] = r.ticks // now
		}
	}
	ctl.Retain(live)
	for id := range r.pending {
		if !live[id] {
			delete(r.pending, id)
		}
	}
	r.enforceDue(ctx)
	if !r.started.IsZero() && now.Sub(r.started) > restoredGrace {
		ctl.ExpireRestored()
	}
	if changedAny || r.ticks%saveEvery == 0 {
		r.save()
	}
	r.opts.Metrics.observe(ctl.Buckets(), time.Since(start).Seconds())
}

// enforceDue writes the containers whose tick has come: now after a change or a
// failure, once more recheckAfter ticks after a change.
func (r *Runner) enforceDue(ctx context.Context) {
	for id, at := range r.pending {
		if at != r.ticks && at+recheckAfter != r.ticks {
			if at+recheckAfter < r.ticks {
				delete(r.pending, id)
			}
			continue
		}
		if err := r.opts.Enforcer.EnforceInForce(ctx, id); err != nil {
			r.log.Warn("burst: cannot write the limit in force; retried next tick", "container", id, "err", err)
			r.opts.Metrics.failed()
			r.pending[id] = r.ticks + 1
			continue
		}
		if at+recheckAfter == r.ticks {
			delete(r.pending, id)
		}
	}
}

// idle reports whether the runner may sleep until Wake: nothing to sample, hold,
// retry or save.
func (r *Runner) idle() bool {
	if r.targets > 0 || len(r.pending) > 0 || !r.opts.Controller.empty() {
		return false
	}
	return r.save()
}

// save writes the credit left, unless the file holds it already, and reports
// whether the file is current.
func (r *Runner) save() bool {
	if r.opts.StatePath == "" {
		return true
	}
	b, err := encodeState(r.opts.Controller.Snapshot())
	if err == nil {
		err = r.state.Save(b)
	}
	if err != nil {
		r.log.Error("burst: cannot save the credit left; a restart will start these buckets empty", "path", r.opts.StatePath, "err", err)
		return false
	}
	return true
}

func formatLimit(v uint64) string {
	if v == 0 {
		return "max"
	}
	return strconv.FormatUint(v, 10)
}
