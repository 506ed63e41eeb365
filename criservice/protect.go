package criservice

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/protect"
)

// protection ties the planner to the protection loop: every container plan that is
// protected or yields is booked here (the runner's targets), and a yielding plan
// takes its limits in force from the runner, so that a reconcile pass, a start or the
// burst loop writes what the protection loop decided, never the bare cap under it.
type protection struct {
	runner    *protect.Runner
	mu        sync.Mutex
	protected map[string][]protect.Protected // container ID → its protected devices
	yields    map[string][]protect.YieldLine // container ID → its yielding lines
}

// EnableProtection makes container plans follow r's limits in force, and books the
// containers that are protected or yield for ProtectTargets. Call it before serving.
func (s *Service) EnableProtection(r *protect.Runner) {
	s.planner.protection.Store(&protection{runner: r, protected: map[string][]protect.Protected{}, yields: map[string][]protect.YieldLine{}})
}

// ProtectBooked is signalled when a container's plan is protected or yields that
// was not (the protection runner's Wake).
func (s *Service) ProtectBooked() <-chan struct{} { return s.planner.protectBooked }

// ProtectTargets lists the running containers that are protected and the lines of
// those that yield, as the last plan of each found them.
func (s *Service) ProtectTargets() ([]protect.Protected, []protect.YieldLine) {
	p := s.planner.protection.Load()
	if p == nil {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	gone := func(id string) bool { _, ok := s.store.container(id); return !ok }
	maps.DeleteFunc(p.protected, func(id string, _ []protect.Protected) bool { return gone(id) })
	maps.DeleteFunc(p.yields, func(id string, _ []protect.YieldLine) bool { return gone(id) })
	var protected []protect.Protected
	for _, id := range slices.Sorted(maps.Keys(p.protected)) {
		protected = append(protected, p.protected[id]...)
	}
	var yields []protect.YieldLine
	for _, id := range slices.Sorted(maps.Keys(p.yields)) {
		yields = append(yields, p.yields[id]...)
	}
	return protected, yields
}

// ProtectPressure reads a cgroup's io.pressure, for the protection loop (v2 only).
func (s *Service) ProtectPressure(dir string) (cgroup.Pressure, error) {
	r, ok := s.opts.IO.(cgroup.PressureReader)
	if !ok {
		return cgroup.Pressure{}, errNoPressure
	}
	return r.Pressure(dir)
}

// HasPressure reports whether this host's cgroups have io.pressure (v2).
func (s *Service) HasPressure() bool {
	_, ok := s.opts.IO.(cgroup.PressureReader)
	return ok
}

var errNoPressure = errors.New("cgroup v1 has no io.pressure: protection needs cgroup v2")

func setOrDelete[T any](m map[string][]T, id string, v []T) {
	if id == "" {
		return
	}
	if len(v) == 0 {
		delete(m, id)
		return
	}
	m[id] = v
}

// limitsInForce lowers each yielding key to the runner's limit in force: never
// above what the plan holds there (its cap, or something stricter merged in).
func (pr *protection) limitsInForce(yields []protect.YieldLine, limits []cgroup.IOLimit) []cgroup.IOLimit {
	if len(yields) == 0 {
		return limits
	}
	out := slices.Clone(limits)
	for _, y := range yields {
		limit := pr.runner.InForce(y)
		if limit == 0 {
			continue // all its bandwidth: the plan's own value stands
		}
		i := slices.IndexFunc(out, func(l cgroup.IOLimit) bool { return l.Device == y.Device })
		if i < 0 {
			out = append(out, cgroup.IOLimit{Device: y.Device})
			i = len(out) - 1
		}
		field := &out[i].WriteBPS
		if y.Kind == protect.ReadBPS {
			field = &out[i].ReadBPS
		}
		if *field == 0 || limit < *field {
			*field = limit
		}
	}
	return out
}
