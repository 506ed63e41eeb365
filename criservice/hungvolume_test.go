package criservice

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/criguard/criguard/cgroup"
)

// hungChains is every volume on a filesystem that never answers: it waits for the
// caller's deadline, as cgroup.ChainCache does on a hung mount.
type hungChains struct{ noDeadline chan<- string }

func (h hungChains) Chain(ctx context.Context, path string) (cgroup.Chain, error) {
	if _, ok := ctx.Deadline(); !ok {
		h.noDeadline <- path
		return cgroup.Chain{Path: path}, fmt.Errorf("%w: no deadline to wait for", cgroup.ErrFilesystemHung)
	}
	<-ctx.Done()
	return cgroup.Chain{Path: path}, fmt.Errorf("%w: stat %s has not answered", cgroup.ErrFilesystemHung, path)
}

// A StartContainer whose volumes all hang returns within --apply-timeout: the
// resolution of every volume shares the hook's deadline.
func TestHungVolumesNeverHoldStartContainer(t *testing.T) {
	const applyTimeout = 200 * time.Millisecond
	noDeadline := make(chan string, 16)
	e := newVolumesEnv(t, false)
	e.svc.planner.chains = hungChains{noDeadline: noDeadline}
	e.svc.opts.ApplyTimeout, e.svc.store.timeout = applyTimeout, applyTimeout
	e.runPod(t, "p1", "data", "burstable", nil)
	start := time.Now()
	e.startWithMounts(t, "c1", "p1", "app", testMounts)
	if took := time.Since(start); took > 2*applyTimeout+500*time.Millisecond {
		t.Errorf("StartContainer with hung volumes took %s, want about --apply-timeout (%s)", took, applyTimeout)
	}
	close(noDeadline)
	for path := range noDeadline {
		t.Errorf("volume %s resolved without a deadline", path)
	}
}
