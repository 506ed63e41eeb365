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
	s.burst.Store(&bursts{ctl: ctl, targets: map[string]burst.Target{}})
}

// BurstTargets lists the running containers whose plan bursts, as the last plan of
// each found them (at start, or a reconcile pass).
func (s *Service) BurstTargets() []burst.Target {
	b := s.burst.Load()
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

// burstInForce books the plan's bursting keys and lays the limits in force over its
// limits. Only a container's own cgroup bursts (the policy refuses bursts in
// pod-scope rules); starting marks a container whose buckets start full.
func (s *Service) burstInForce(p *Plan, starting bool) {
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
	if old, ok := b.targets[p.ContainerID]; ok && old.Fresh {
		t.Fresh = true // kept until the runner made its buckets
	}
	b.targets[p.ContainerID] = t
	b.mu.Unlock()
	p.Limits = b.ctl.LimitsInForce(t, p.ClassLimits)
}

// burstLines resolves the devices of the decision's bursting keys.
func (s *Service) burstLines(io []policy.IOLimits) []burst.Line {
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
