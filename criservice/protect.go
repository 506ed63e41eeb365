package criservice

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/policy"
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
	s.protection.Store(&protection{runner: r, protected: map[string][]protect.Protected{}, yields: map[string][]protect.YieldLine{}})
}

// ProtectTargets lists the running containers that are protected and the lines of
// those that yield, as the last plan of each found them.
func (s *Service) ProtectTargets() ([]protect.Protected, []protect.YieldLine) {
	p := s.protection.Load()
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

// protectionLines resolves the decision's protected devices and yielding keys.
// Only a container's own cgroup takes part (the policy refuses protection in
// pod-scope rules).
func (s *Service) protectionLines(p *Plan) ([]protect.Protected, []protect.YieldLine) {
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

// protectInForce books the plan's protected devices and yielding lines, and lays
// the yielding lines' limits in force over its limits.
func (s *Service) protectInForce(p *Plan) {
	pr := s.protection.Load()
	if pr == nil {
		return
	}
	protected, yields := s.protectionLines(p)
	pr.mu.Lock()
	setOrDelete(pr.protected, p.ContainerID, protected)
	setOrDelete(pr.yields, p.ContainerID, yields)
	pr.mu.Unlock()
	p.Limits = pr.limitsInForce(yields, p.Limits)
}

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

// inForce lays the loops' limits in force over the class's limits (ClassLimits):
// the burst loop's raised keys, then the protection loop's lowered ones. It starts
// from ClassLimits each time, so that it may run again under the cgroup's write
// lock with what the loops decided since the plan was made.
func (s *Service) inForce(p *Plan, starting bool) {
	p.Limits = slices.Clone(p.ClassLimits)
	s.burstInForce(p, starting)
	s.protectInForce(p)
	s.noteClassLimits(*p)
}

// refreshInForce is inForce for the enforcer, under the cgroup's write lock: a plan
// made before a loop's tick writes that tick's limits, not the ones before it.
func (s *Service) refreshInForce(p *Plan) {
	if p.ContainerID == "" || p.Decision.HandsOff || !s.loopsHold(p.ContainerID) {
		return
	}
	s.inForce(p, false)
	s.yieldToUnit(p) // as planContainer did after it
}

// loopsHold reports whether the burst or protection loop holds limits in force for
// the container: only then may they have moved since its plan was made.
func (s *Service) loopsHold(id string) bool {
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
