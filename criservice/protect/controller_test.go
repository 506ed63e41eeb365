package protect

import (
	"math/rand/v2"
	"testing"
)

const mib = 1 << 20

var writer = Yielder{Name: "batch/writer", Floor: 10 * mib, Ceiling: 200 * mib}

// pressureOf is a disk shared by a protected reader and a yielding writer: the
// reader's pressure grows with what the writer may use above what leaves the reader
// alone. Below that it is low but not 0: a workload doing I/O always stalls a little.
func pressureOf(writerLimit uint64) float64 {
	free := 40.0 * mib // below this the reader sees no contention
	return max(busy, (float64(writerLimit)-free)/mib*0.5)
}

// busy is a busy, well protected workload's pressure.
const busy = 0.1

func run(t *testing.T, c *Controller, ticks int, target float64, pressure func(limit uint64) float64) []Change {
	t.Helper()
	var all []Change
	for range ticks {
		l := c.Limit(writer.Name)
		all = append(all, c.Step([]Pressure{{Name: "web/reader", Share: pressure(l), Target: target}})...)
		if l := c.Limit(writer.Name); l < writer.Floor || l > writer.Ceiling {
			t.Fatalf("limit %d outside [floor %d, ceiling %d]", l, writer.Floor, writer.Ceiling)
		}
	}
	return all
}

// Under pressure the writer is tightened step by step, each step waiting for its
// effect, until the reader is under target. While the reader stays busy the writer
// probes for bandwidth ever more rarely: each failed probe doubles the hold-down.
func TestTightensToTargetAndProbesRarely(t *testing.T) {
	c := New(DefaultConfig, []Yielder{writer})
	changes := run(t, c, 3, 10, pressureOf)
	// 200 → 100 → 50 MiB: pressure 80, 30, then 5 (under 10*0.8). Two steps, 3 ticks apart.
	if len(changes) != 1 || changes[0].To != 100*mib {
		t.Fatalf("changes = %+v, want 200→100 MiB at once", changes)
	}
	changes = run(t, c, 3, 10, pressureOf)
	if len(changes) != 1 || changes[0].To != 50*mib {
		t.Fatalf("changes = %+v, want 100→50 MiB after the cool-down", changes)
	}
	var probes []int // ticks at which a give-back starts
	giving := false
	for i := range 1200 {
		ch := run(t, c, 1, 10, pressureOf)
		for _, x := range ch {
			if x.Reason == "give_back" && !giving {
				probes = append(probes, i)
			}
			giving = x.Reason == "give_back"
		}
	}
	if len(probes) < 3 || len(probes) > 8 {
		t.Fatalf("probes at ticks %v over 20 minutes, want a few, ever rarer", probes)
	}
	for i := 2; i < len(probes); i++ {
		if gap, prev := probes[i]-probes[i-1], probes[i-1]-probes[i-2]; gap < prev && gap < DefaultConfig.MaxHoldDown {
			t.Errorf("probe gaps shrink: %v", probes)
		}
	}
}

// A pressure that stays high drives the writer to its floor and no lower.
func TestNeverBelowTheFloor(t *testing.T) {
	c := New(DefaultConfig, []Yielder{writer})
	run(t, c, 100, 1, func(uint64) float64 { return 90 })
	if got := c.Limit(writer.Name); got != writer.Floor {
		t.Errorf("limit %d MiB under constant pressure, want the floor %d", got/mib, writer.Floor/mib)
	}
}

// Once the reader goes quiet, the bandwidth comes back after HoldDown ticks, a
// tenth of the range per tick: at the ceiling HoldDown + 10 ticks later.
func TestGivesBackAfterQuiet(t *testing.T) {
	c := New(DefaultConfig, []Yielder{writer})
	run(t, c, 100, 1, func(uint64) float64 { return 90 })
	quiet := func(uint64) float64 { return 0 }
	if changes := run(t, c, DefaultConfig.HoldDown-1, 1, quiet); len(changes) != 0 {
		t.Fatalf("gave back before the hold-down: %+v", changes)
	}
	changes := run(t, c, 10, 1, quiet)
	if len(changes) != 10 || c.Limit(writer.Name) != writer.Ceiling {
		t.Errorf("%d give-backs, limit %d MiB; want 10 steps to the ceiling", len(changes), c.Limit(writer.Name)/mib)
	}
	if changes := run(t, c, 50, 1, quiet); len(changes) != 0 {
		t.Errorf("changes at the ceiling: %+v", changes)
	}
}

// A pressure wavering around the target within the dead band changes nothing, and
// noise across the target tightens a little and never gives back in between.
func TestNoFlappingInTheBand(t *testing.T) {
	c := New(DefaultConfig, []Yielder{writer})
	rng := rand.New(rand.NewPCG(3, 4))
	if changes := run(t, c, 600, 10, func(uint64) float64 { return 8.5 + rng.Float64()*1.4 }); len(changes) != 0 {
		t.Errorf("changes inside the dead band (8.5–9.9 for a target of 10): %+v", changes)
	}
	// Around the target, crossing it now and then: tightenings only, bounded.
	changes := run(t, c, 600, 10, func(uint64) float64 { return 8.5 + rng.Float64()*2 })
	for _, ch := range changes {
		if ch.Reason != "tighten" {
			t.Fatalf("gave back while the pressure never fell below the band: %+v", ch)
		}
	}
}

// A reader whose pressure falls near 0 once the writer is held low enough: a low
// pressure is what protection looks like, so the writer keeps probing ever more
// rarely instead of every hold-down; once the reader's container is gone (no
// sample), the backoff resets and the writer is back at its ceiling in 20 ticks.
func TestLowPressureIsNotQuiet(t *testing.T) {
	c := New(DefaultConfig, []Yielder{writer})
	shielded := func(limit uint64) float64 { return max(busy, (float64(limit)/mib-30)*0.5) }
	changes := run(t, c, 1200, 10, shielded)
	if len(changes) > 40 {
		t.Errorf("%d changes in 20 minutes of steady load: the writer probes too often", len(changes))
	}
	for range 20 {
		c.Step(nil)
	}
	if got := c.Limit(writer.Name); got != writer.Ceiling {
		t.Errorf("limit %d MiB 20 ticks after the protected workload left, want the ceiling", got/mib)
	}
}

// Sync adds yielders at their ceiling or a restored limit (within bounds), drops
// the ones gone, and brings a limit inside new bounds.
func TestSync(t *testing.T) {
	c := New(DefaultConfig, nil)
	restored := map[string]uint64{"a": 50 * mib, "b": 1}
	start := func(name string) (uint64, bool) { v, ok := restored[name]; return v, ok }
	changes := c.Sync([]Yielder{{Name: "a", Floor: 10 * mib, Ceiling: 200 * mib}, {Name: "b", Floor: 10 * mib, Ceiling: 200 * mib},
		{Name: "c", Floor: 10 * mib, Ceiling: 200 * mib}}, start)
	if c.Limit("a") != 50*mib || c.Limit("b") != 10*mib || c.Limit("c") != 200*mib || len(changes) != 2 {
		t.Fatalf("limits a=%d b=%d c=%d, changes %+v; want a restored, b at its floor, c at its ceiling", c.Limit("a"), c.Limit("b"), c.Limit("c"), changes)
	}
	changes = c.Sync([]Yielder{{Name: "a", Floor: 10 * mib, Ceiling: 40 * mib}}, start)
	if c.Limit("a") != 40*mib || len(changes) != 1 || changes[0].Reason != "bounds_changed" || c.Yielders() != 1 {
		t.Errorf("after a lower cap: a=%d, changes %+v, %d yielders", c.Limit("a"), changes, c.Yielders())
	}
}

// The pressure shows a limit's effect a few ticks late (a disk's queue, the kernel's
// averaging). Give-back stops at the knee, the limit the last tightening left, and a
// probe goes one step above it: the writer never gets more than one step above what
// left the reader calm, where a climb to the ceiling would have run on for the lag.
func TestProbeGoesOneStepAboveTheKnee(t *testing.T) {
	const lag = 3
	c := New(DefaultConfig, []Yielder{writer})
	past := make([]uint64, 0, lag+1)
	lagging := func(limit uint64) float64 {
		past = append(past, limit)
		if len(past) > lag+1 {
			past = past[1:]
		}
		return pressureOf(past[0])
	}
	run(t, c, 10, 10, lagging) // the first tightenings
	// pressureOf is calm up to 56 MiB; one give-back step is a tenth of 190 MiB.
	limit := uint64(56*mib) + uint64(0.1*float64(writer.Ceiling-writer.Floor))
	for i := range 1200 {
		run(t, c, 1, 10, lagging)
		if got := c.Limit(writer.Name); got > limit {
			t.Fatalf("tick %d: the writer may use %d MiB/s, more than a step above what left the reader calm (%d)", i, got/mib, limit/mib)
		}
	}
}
