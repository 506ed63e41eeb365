// Package protect is protection: its control law (Controller) and the loop that
// drives it (Runner). While a protected workload's own I/O pressure stays above its
// target, the yielding workloads on the same device are tightened step by step toward
// their floors; once the pressure has stayed under the target for a while they get
// their bandwidth back step by step. The Controller does no I/O: the Runner feeds it
// pressure samples and writes its limits.
//
// The pressure is the share of wall time some task of the workload waited on I/O over
// the last few ticks, from io.pressure's "some total" (avg10 lags a step's effect by
// 3-4 s: a give-back would overshoot for that long before the law saw it).
//
// The law (AIMD with a dead band and a knee, one Controller per device), each tick:
//   - hot: some protected workload's pressure is above its target. Every Cooldown
//     ticks (the first at once) each yielder's limit is multiplied by Decrease,
//     never below its floor. The limit it gets is its knee: the highest the law
//     knows leaves the protected workload calm.
//   - calm: every protected workload's pressure is at or below Band times its
//     target. After HoldDown calm ticks in a row, each tick adds Increase times
//     (ceiling - floor) to each yielder's limit, up to its knee (its ceiling if it
//     has none). Once every yielder is at its knee, the hold-down starts again; if it
//     passes calm, the knees are lifted one step (a probe) and the yielders follow.
//   - between the two (the dead band): nothing changes, and the calm count restarts.
//   - probe backoff: a tightening after a probe doubles the hold-down, up to
//     MaxHoldDown. It returns to HoldDown, and the knees are forgotten, once the
//     yielders are all back at their ceilings, or no protected workload is left to
//     sample on the device, or every one of them has been idle (no stall at all) for
//     HoldDown ticks. A low pressure is not idle: a workload doing I/O always stalls
//     a little, a well protected one too.
//
// No flapping: a pressure that wavers around its target inside the band changes
// nothing, a tightening waits Cooldown ticks for its effect, a give-back starts only
// after a hold-down of calm ticks and stops at the knee, so a probe goes one step
// above what was calm, and a busy protected workload's neighbours probe ever more
// rarely (AIMD's saw-tooth with a period that doubles up to MaxHoldDown). Once the
// protected workload stops or goes idle, the yielders are back at their ceilings
// HoldDown + 1/Increase ticks later.
package protect

import "math"

// Config holds the law's constants.
type Config struct {
	Decrease float64 // multiplicative step when hot, in (0, 1)
	Increase float64 // additive step when calm, a fraction of ceiling - floor, in (0, 1]
	Band     float64 // calm means pressure <= Band * target, in (0, 1]
	Cooldown int     // ticks between two tightenings, >= 1
	HoldDown int     // calm ticks before giving back, >= 1
	// MaxHoldDown bounds the hold-down as failed probes double it.
	MaxHoldDown int
}

// DefaultConfig is the documented default at one tick a second: halve every 3 s under
// pressure; after 10 s calm below 80 % of the target give back a tenth of the range
// per second; a failed probe doubles the 10 s up to 5 min, reset once the yielders
// are back at their ceilings or the protected workload is gone.
var DefaultConfig = Config{Decrease: 0.5, Increase: 0.1, Band: 0.8, Cooldown: 3, HoldDown: 10, MaxHoldDown: 300}

// Yielder is one yielding workload's key on the device: its floor and its ceiling
// (the class's own limit, or the disk's speed for a class without one).
type Yielder struct {
	Name           string
	Floor, Ceiling uint64
}

// Pressure is one protected workload's sample: the share of the last ticks in which
// some of its tasks waited on I/O (percent), and its target.
type Pressure struct {
	Name          string
	Share, Target float64
}

// Change is a yielder's new limit.
type Change struct {
	Name     string
	From, To uint64
	Reason   string // "tighten" or "give_back"
}

// Controller is one device's protection state.
type Controller struct {
	cfg      Config
	yielders []Yielder
	limits   map[string]uint64
	// knees are the yielders' limits after the last tightening, lifted a step by each
	// probe: give-back stops there. None: up to the ceiling.
	knees        map[string]uint64
	calm         int // calm ticks in a row
	idle         int // ticks in a row with every protected workload idle
	sinceTighten int // ticks since the last tightening
	holdDown     int // calm ticks needed before giving back
	probing      bool
}

// New returns a controller with every yielder at its ceiling.
func New(cfg Config, yielders []Yielder) *Controller {
	c := &Controller{cfg: cfg, yielders: yielders, limits: map[string]uint64{}, knees: map[string]uint64{},
		sinceTighten: math.MaxInt / 2, holdDown: cfg.HoldDown}
	for _, y := range yielders {
		c.limits[y.Name] = y.Ceiling
	}
	return c
}

// Limit is a yielder's limit in force.
func (c *Controller) Limit(name string) uint64 { return c.limits[name] }

// Step is one tick.
func (c *Controller) Step(samples []Pressure) []Change {
	hot, calm, idle := false, true, len(samples) > 0
	for _, p := range samples {
		if p.Share > p.Target {
			hot = true
		}
		if p.Share > c.cfg.Band*p.Target {
			calm = false
		}
		if p.Share > 0 {
			idle = false
		}
	}
	if idle {
		c.idle++
	} else {
		c.idle = 0
	}
	if len(samples) == 0 || c.idle >= c.cfg.HoldDown {
		c.release() // nobody to protect, or nobody doing I/O
	}
	c.sinceTighten++
	var changes []Change
	switch {
	case hot:
		c.calm = 0
		if c.sinceTighten < c.cfg.Cooldown {
			return nil
		}
		c.sinceTighten = 0
		if c.probing {
			// The probe found the limit too loose: probe more rarely.
			c.holdDown = min(2*c.holdDown, c.cfg.MaxHoldDown)
			c.probing = false
		}
		for _, y := range c.yielders {
			from := c.limits[y.Name]
			to := max(y.Floor, uint64(float64(from)*c.cfg.Decrease))
			c.knees[y.Name] = to
			changes = c.set(changes, y.Name, from, to, "tighten")
		}
	case calm:
		c.calm++
		if c.calm < c.holdDown {
			return nil
		}
		changes = c.giveBack(changes)
		if len(changes) == 0 && len(c.knees) > 0 {
			// Held calm at the knees: probe one step above them.
			for _, y := range c.yielders {
				if knee, ok := c.knees[y.Name]; ok {
					c.knees[y.Name] = min(y.Ceiling, knee+c.step(y))
				}
			}
			c.probing = true
			changes = c.giveBack(changes)
		}
		if c.atKnees() {
			c.calm = 0 // hold there before the next probe
		}
		if c.atCeilings() {
			c.release()
		}
	default:
		c.calm = 0
	}
	return changes
}

// giveBack moves each yielder a step toward its knee or, without one, its ceiling.
func (c *Controller) giveBack(changes []Change) []Change {
	for _, y := range c.yielders {
		from := c.limits[y.Name]
		changes = c.set(changes, y.Name, from, min(c.top(y), from+c.step(y)), "give_back")
	}
	return changes
}

func (c *Controller) step(y Yielder) uint64 {
	return max(uint64(c.cfg.Increase*float64(y.Ceiling-y.Floor)), 1)
}

// top is as high as give-back takes y now.
func (c *Controller) top(y Yielder) uint64 {
	if knee, ok := c.knees[y.Name]; ok {
		return min(max(knee, y.Floor), y.Ceiling)
	}
	return y.Ceiling
}

// release forgets the knees and the backoff.
func (c *Controller) release() {
	clear(c.knees)
	c.holdDown, c.probing = c.cfg.HoldDown, false
}

func (c *Controller) set(changes []Change, name string, from, to uint64, reason string) []Change {
	if to == from {
		return changes
	}
	c.limits[name] = to
	return append(changes, Change{Name: name, From: from, To: to, Reason: reason})
}

// Sync makes yielders the controller's yielders, as workloads come and go: a new one
// starts at what start gives for it (a limit restored across a restart) or at its
// ceiling; one no longer listed is dropped; a limit outside new bounds is brought
// inside them. The hot and calm counts are the device's and stay.
func (c *Controller) Sync(yielders []Yielder, start func(name string) (uint64, bool)) []Change {
	var changes []Change
	seen := make(map[string]bool, len(yielders))
	for _, y := range yielders {
		seen[y.Name] = true
		from, ok := c.limits[y.Name]
		if !ok {
			to := y.Ceiling
			if restored, ok := start(y.Name); ok {
				to = min(max(restored, y.Floor), y.Ceiling)
			}
			c.limits[y.Name] = to
			if to != y.Ceiling {
				changes = append(changes, Change{Name: y.Name, From: y.Ceiling, To: to, Reason: "restored"})
			}
			continue
		}
		changes = c.set(changes, y.Name, from, min(max(from, y.Floor), y.Ceiling), "bounds_changed")
	}
	for name := range c.limits {
		if !seen[name] {
			delete(c.limits, name)
			delete(c.knees, name)
		}
	}
	c.yielders = yielders
	return changes
}

// Yielders counts the yielders.
func (c *Controller) Yielders() int { return len(c.yielders) }

func (c *Controller) has(name string) bool { _, ok := c.limits[name]; return ok }

// atKnees reports whether every yielder is as high as give-back takes it now.
func (c *Controller) atKnees() bool {
	for _, y := range c.yielders {
		if c.limits[y.Name] < c.top(y) {
			return false
		}
	}
	return true
}

// atCeilings reports whether every yielder has all its bandwidth.
func (c *Controller) atCeilings() bool {
	for _, y := range c.yielders {
		if c.limits[y.Name] < y.Ceiling {
			return false
		}
	}
	return true
}
