// Package tickloop runs a control loop that ticks on an interval and sleeps while
// it has nothing to act on: each wake-up of an otherwise idle daemon costs CPU.
package tickloop

import (
	"context"
	"time"
)

// Loop is what Run drives.
type Loop struct {
	Interval time.Duration
	// Wake is signalled whenever the loop may have something to act on again (a
	// buffer of one keeps a signal sent during a tick). nil: the loop never sleeps.
	Wake <-chan struct{}
	// Tick is one pass, at now.
	Tick func(ctx context.Context, now time.Time)
	// Idle reports, after a tick, whether the loop may sleep until woken: it has
	// nothing to act on and nothing left to save.
	Idle func() bool
	// Stop runs when ctx is done while the loop is awake (a final save).
	Stop func()
}

// Run ticks at once, then every interval until ctx is done. When the loop is idle
// after a tick it stops ticking until Wake is signalled, then ticks at once and
// goes on.
func Run(ctx context.Context, loop Loop) {
	ticker := time.NewTicker(loop.Interval)
	defer ticker.Stop()
	loop.Tick(ctx, time.Now())
	for {
		if loop.Wake != nil && loop.Idle() {
			ticker.Stop()
			select {
			case <-ctx.Done():
				return // idle: nothing left to save
			case <-loop.Wake:
			}
			ticker.Reset(loop.Interval)
			loop.Tick(ctx, time.Now())
			continue
		}
		select {
		case <-ctx.Done():
			loop.Stop()
			return
		case now := <-ticker.C:
			loop.Tick(ctx, now)
		}
	}
}
