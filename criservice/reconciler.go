package criservice

import (
	"cmp"
	"context"
	"log/slog"
	"time"
)

// Passes is what the reconciler drives: a whole pass over what runs, and the
// quick recheck of the cgroups whose own systemd unit shares a disk with
// criguard's limits. Service is one.
type Passes interface {
	Reconcile(ctx context.Context) (ReconcileResult, error)
	RecheckConflicted(ctx context.Context)
	// Conflicted reports whether any cgroup waits for a recheck, and the channel
	// that wakes the recheck when one is recorded.
	Conflicted() (bool, <-chan struct{})
}

// conflictRecheckInterval bounds how long a daemon-reload can leave criguard's keys
// off a line systemd rewrote (RecheckConflicted).
const conflictRecheckInterval = 2 * time.Second

// changedGap is the least time between the start of a pass and a pass for limits
// another wrote: however often a tenant rewrites them, passes stay that far apart.
const changedGap = time.Second

// Reconciler owns when passes run: at start, on every trigger (a policy reload,
// the runtime back from an outage), when limits read back were written by another
// (Changed), every Interval, and the conflict recheck every Recheck. Triggers that
// arrive during a pass fold into one more pass.
type Reconciler struct {
	Passes   Passes
	Interval time.Duration
	Recheck  time.Duration // 0: every 2 s
	// Changed is signalled when limits a pass read back were written since
	// (Service.LimitsChanged); the pass for it starts at least ChangedGap after the
	// one before. nil: none.
	Changed    <-chan struct{}
	ChangedGap time.Duration // 0: one second
	Log        *slog.Logger
}

// Run reconciles until ctx ends.
func (r *Reconciler) Run(ctx context.Context, trigger <-chan struct{}) {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ticker := time.NewTicker(r.Interval)
	defer ticker.Stop()
	go r.recheckEvery(ctx, cmp.Or(r.Recheck, conflictRecheckInterval))
	gap := cmp.Or(r.ChangedGap, changedGap)
	for {
		started := time.Now()
		res, err := r.Passes.Reconcile(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("reconcile failed; will retry", "err", err)
		case res.Fixed > 0 || res.Failed > 0:
			log.Info("reconciled", "pods", res.Pods, "containers", res.Containers, "fixed", res.Fixed, "failed", res.Failed, "took", res.Elapsed)
		default:
			log.Debug("reconciled", "pods", res.Pods, "containers", res.Containers, "took", res.Elapsed)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-trigger:
		case <-r.Changed:
			if !sleepUntil(ctx, started.Add(gap)) {
				return
			}
		}
	}
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// recheckEvery sleeps while nothing is conflicted: each wake-up of an idle
// criguard costs a few hundred µs of CPU (issue 20).
func (r *Reconciler) recheckEvery(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if any, recorded := r.Passes.Conflicted(); !any {
			ticker.Stop()
			select {
			case <-ctx.Done():
				return
			case <-recorded:
			}
			ticker.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			r.Passes.RecheckConflicted(ctx)
		}
	}
}
