package policy

import (
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Protection shares a disk by pressure instead of fixed caps: a protected class
// names a target on its own I/O pressure (cgroup v2 io.pressure, "some" avg10), and
// while a protected workload stays above it the yielding classes on the same device
// are tightened step by step toward their floors, and given their bandwidth back
// once the pressure has stayed under it (criservice/protect holds the law).
//
//	class "web"   { io { device = "data"  protect { pressure_some_avg10 = 10 } } }
//	class "batch" { io { device = "data"  write_bps = "200MiB"  yield { floor = "20MiB" } } }

// IOProtect marks an io block's workload as protected on its device. The zero value
// is not protected.
type IOProtect struct {
	// PressureSomeAvg10 is the target, in percent of wall time some task of the
	// cgroup waited on I/O (io.pressure "some"), measured over the last few seconds.
	PressureSomeAvg10 float64
}

// IsZero reports whether the block protects nothing.
func (p IOProtect) IsZero() bool { return p.PressureSomeAvg10 == 0 }

// IOYield marks an io block's workload as yielding to protected ones on its device:
// each of its bytes-per-second keys may be tightened down to Floor. A key's ceiling
// is the block's own cap; Ceiling (the disk's speed, say) lets an uncapped bps key
// yield too. The zero value does not yield.
type IOYield struct {
	Floor   uint64 // bytes/s
	Ceiling uint64 // bytes/s for bps keys without a cap; 0: those keys do not yield
}

// IsZero reports whether the block yields nothing.
func (y IOYield) IsZero() bool { return y.Floor == 0 }

// SetsNothing reports whether the block neither throttles, weights, protects nor yields.
func (l IOLimits) SetsNothing() bool {
	return l.IsZero() && l.Weight == 0 && l.Protect.IsZero() && l.Yield.IsZero()
}

// YieldKey is one key that yields: the protection loop moves its limit within
// [Floor, Ceiling]; Capped says Ceiling is the block's own cap (otherwise the key has
// no cap and is unlimited when given all its bandwidth back).
type YieldKey struct {
	Key            IOKey
	Floor, Ceiling uint64
	Capped         bool
}

// YieldKeys lists the block's keys that yield: read_bps and write_bps, each under
// its cap, or under the yield's ceiling where it has none.
func (l IOLimits) YieldKeys() []YieldKey {
	if l.Yield.IsZero() {
		return nil
	}
	var out []YieldKey
	for _, k := range []IOKey{KeyReadBPS, KeyWriteBPS} {
		ceiling, capped := *ioKeys[k].sustained(&l), true
		if ceiling == 0 {
			ceiling, capped = l.Yield.Ceiling, false
		}
		if ceiling == 0 {
			continue
		}
		out = append(out, YieldKey{Key: k, Floor: min(l.Yield.Floor, ceiling), Ceiling: ceiling, Capped: capped})
	}
	return out
}

// MaxPressureTarget bounds a protection target: pressure is a percentage, and a
// target of 100 could never be exceeded.
const MaxPressureTarget = 100.0

var (
	protectSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "pressure_some_avg10", Required: true}}}
	yieldSchema   = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "floor", Required: true}, {Name: "ceiling"}}}
)

// decodeSharing reads the io block's protect and yield blocks (at most one of each,
// never both) into limits, once its caps and burst are known.
func (d *decoder) decodeSharing(protects, yields hcl.Blocks, limits *IOLimits) bool {
	ok := true
	for _, dup := range []hcl.Blocks{protects, yields} {
		for _, b := range dup[min(1, len(dup)):] {
			d.errorf(b.DefRange, "Duplicate "+b.Type+" block",
				"This io block already has a %s block at %s; one is enough.", b.Type, rangeLine(dup[0].DefRange))
			ok = false
		}
	}
	if len(protects) > 0 && len(yields) > 0 {
		d.errorf(yields[0].DefRange, "Protected and yielding at once",
			"This io block is protected (at %s): it cannot also yield on the same device. Put yield in the class of the neighbours that should give way.", rangeLine(protects[0].DefRange))
		return false
	}
	for _, b := range append(protects, yields...) {
		if limits.SelectsMounts() {
			d.errorf(b.DefRange, "Protection on a per-container device",
				"%s needs a fixed device, shared by the protected and the yielding workloads; device = %q is resolved per container. Name a device label, a path or MAJ:MIN.", b.Type, limits.Device)
			return false
		}
	}
	if len(protects) > 0 && ok {
		ok = d.decodeProtect(protects[0], limits)
	}
	if len(yields) > 0 && ok {
		ok = d.decodeYield(yields[0], limits)
	}
	return ok
}

func (d *decoder) decodeProtect(b *hcl.Block, limits *IOLimits) bool {
	before := len(d.diags)
	content := d.content(b.Body, protectSchema)
	attr := content.Attributes["pressure_some_avg10"]
	if len(d.diags) > before || attr == nil {
		return false
	}
	v, ok := d.value(attr)
	if !ok {
		return false
	}
	if v.Type() != cty.Number {
		d.typeError(attr, "a percentage", "pressure_some_avg10 = 10", v)
		return false
	}
	f, _ := v.AsBigFloat().Float64()
	if v.AsBigFloat().Sign() <= 0 || v.AsBigFloat().Cmp(big.NewFloat(MaxPressureTarget)) >= 0 {
		d.errorf(attr.Expr.Range(), "Invalid pressure target",
			"pressure_some_avg10 = %s is refused: it is a percentage of wall time, above 0 and below %g. Use e.g. 10: protect while some task of the workload waits on I/O more than 10%% of the time.",
			v.AsBigFloat().Text('g', 10), MaxPressureTarget)
		return false
	}
	limits.Protect = IOProtect{PressureSomeAvg10: f}
	return true
}

func (d *decoder) decodeYield(b *hcl.Block, limits *IOLimits) bool {
	before := len(d.diags)
	content := d.content(b.Body, yieldSchema)
	if len(d.diags) > before {
		return false
	}
	if !limits.Burst.IsZero() {
		d.errorf(b.DefRange, "Burst and yield on one device",
			"This io block bursts, and a burst raises the limit in force while yield lowers it: the two would fight over one line. Keep one of them on %s.", limits.Target())
		return false
	}
	var y IOYield
	floorAttr := content.Attributes["floor"]
	floor, ok := d.quantityValue(floorAttr, true)
	if !ok {
		return false
	}
	if floor == 0 {
		d.errorf(floorAttr.Expr.Range(), "Yield floor of 0",
			"floor is the least a yielding workload keeps on the disk; 0 would stop it. Give a rate above 0, e.g. floor = \"10MiB\".")
		return false
	}
	y.Floor = floor
	if attr := content.Attributes["ceiling"]; attr != nil {
		ceiling, good := d.quantityValue(attr, true)
		switch {
		case !good:
			return false
		case limits.ReadBPS != 0 && limits.WriteBPS != 0:
			d.errorf(attr.NameRange, "Yield ceiling unused",
				"ceiling is where a key without a cap gives way from, and this io block caps both read_bps and write_bps: their caps are the ceilings. Remove ceiling.")
			return false
		case ceiling <= floor:
			d.errorf(attr.Expr.Range(), "Yield ceiling at or below the floor",
				"ceiling = %s is not above floor = %s: there would be nothing to yield. Set ceiling to the disk's speed, e.g. \"500MiB\".", FormatBytes(ceiling), FormatBytes(floor))
			return false
		}
		y.Ceiling = ceiling
	}
	for _, k := range []IOKey{KeyReadBPS, KeyWriteBPS} {
		if limit := *ioKeys[k].sustained(limits); limit != 0 && floor >= limit {
			d.errorf(floorAttr.Expr.Range(), "Yield floor at or above the cap",
				"floor = %s is not below %s = %s, so %s could never give way. Lower the floor below the cap.", FormatBytes(floor), k, FormatBytes(limit), k)
			return false
		}
	}
	if limits.ReadBPS == 0 && limits.WriteBPS == 0 && y.Ceiling == 0 {
		d.errorf(b.DefRange, "Yield without a ceiling",
			"A yielding workload gives way from its read_bps or write_bps cap down to its floor, and this io block caps neither. Set write_bps (or read_bps) here, or ceiling = \"500MiB\" (the disk's speed) in the yield block.")
		return false
	}
	limits.Yield = y
	return true
}

// checkPodScopeSharing refuses a pod-scope rule whose class protects or yields: the
// protection loop reads and writes each container's own cgroup, and a pod budget
// would silently be left out.
func (d *decoder) checkPodScopeSharing(rule *Rule, scopeRange hcl.Range) bool {
	class := d.policy.Classes[rule.Class]
	if rule.Scope != ScopePod || class == nil {
		return true
	}
	for _, l := range class.IO {
		what := ""
		switch {
		case !l.Protect.IsZero():
			what = "is protected"
		case !l.Yield.IsZero():
			what = "yields"
		default:
			continue
		}
		d.errorf(scopeRange, "Protection in a pod-scope rule",
			"Class %q %s (io on %s), and protection works on each container's own cgroup for now, not on a pod budget. Use scope = \"container\", or another class.", rule.Class, what, l.Target())
		return false
	}
	return true
}

// tightestYield is the stricter of two yields on one target: a workload yields if
// either says so, down to the lower floor, from the lower ceiling.
func tightestYield(a, b IOYield) IOYield {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	}
	return IOYield{Floor: min(a.Floor, b.Floor), Ceiling: tightest(a.Ceiling, b.Ceiling)}
}

// boundSharing keeps the tenant from escaping protection or buying it: protection is
// the rule's alone (an annotation never protects a pod, nor lowers its target, which
// would tighten its neighbours), and a workload the rule makes yield still yields,
// at the rule's floor or lower, whatever class or numbers an annotation picked.
func boundSharing(io, ruleIO []IOLimits) []IOLimits {
	out := make([]IOLimits, len(io))
	for i, l := range io {
		var rule IOLimits
		for _, r := range ruleIO {
			if r.Target() == l.Target() {
				rule = r
			}
		}
		l.Protect = rule.Protect
		l.Yield = tightestYield(l.Yield, rule.Yield)
		if !l.Yield.IsZero() {
			l.Burst = IOBurst{} // a yielding key never bursts (the policy refuses both in one block)
		}
		out[i] = l
	}
	return out
}

// Protected reports whether any block of the decision is protected.
func (d Decision) Protected() bool {
	for _, l := range d.IO {
		if !l.Protect.IsZero() {
			return true
		}
	}
	return false
}

// Yields reports whether any block of the decision yields.
func (d Decision) Yields() bool {
	for _, l := range d.IO {
		if !l.Yield.IsZero() {
			return true
		}
	}
	return false
}
