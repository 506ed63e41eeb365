package criservice

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/policy"
)

// bursts ties the planner to the burst loop: every container plan that bursts is
// booked here (the runner's targets), and takes the limits in force from the
// controller, so that a reconcile pass or a start writes what the loop decided,
// never the bare sustained rate over a running burst.
type bursts struct {
	ctl     *burst.Controller
	mu      sync.Mutex
	targets map[string]burst.Target // container ID → what bursts
}

// EnableBurst makes container plans follow ctl's limits in force, and books the
// containers that burst for BurstTargets. Call it before serving.
func (s *Service) EnableBurst(ctl *burst.Controller) {
	s.planner.burst.Store(&bursts{ctl: ctl, targets: map[string]burst.Target{}})
}

// BurstBooked is signalled when a container's plan bursts that did not (the burst
// runner's Wake).
func (s *Service) BurstBooked() <-chan struct{} { return s.planner.burstBooked }

// BurstTargets lists the running containers whose plan bursts, as the last plan of
// each found them (at start, or a reconcile pass).
func (s *Service) BurstTargets() []burst.Target {
	b := s.planner.burst.Load()
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// A container the cache no longer holds is gone (a reconcile pass found it
	// stopped): its booking goes too.
	maps.DeleteFunc(b.targets, func(id string, _ burst.Target) bool { _, ok := s.store.container(id); return !ok })
	return slices.Collect(maps.Values(b.targets))
}

// EnforceInForce brings a container to its plan, with the limits in force.
func (s *Service) EnforceInForce(ctx context.Context, id string) error {
	_, _, err := s.ApplyContainer(ctx, id)
	return err
}

func burstKind(k policy.IOKey) burst.Kind {
	switch k {
	case policy.KeyReadBPS:
		return burst.ReadBPS
	case policy.KeyWriteBPS:
		return burst.WriteBPS
	case policy.KeyReadIOPS:
		return burst.ReadIOPS
	}
	return burst.WriteIOPS
}

// BurstStats reads a cgroup's I/O counters, for the burst loop.
func (s *Service) BurstStats(dir string) ([]cgroup.IOStat, error) { return s.opts.IO.Stats(dir) }
