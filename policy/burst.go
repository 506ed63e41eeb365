package policy

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// IOBurst lets an io block's keys run above their sustained rate until a credit is
// spent; the credit refills at the sustained rate while the workload runs below it.
// Credit gives each bursting bps key a bucket of that many bytes, CreditOps each
// bursting iops key a bucket of that many operations. A rate names a key that
// bursts and the most it may run at while credit lasts (Unthrottled: no limit);
// 0 does not name it. When no rate of a kind is named, every key of that kind with
// a sustained rate bursts unthrottled. The zero value is no burst.
type IOBurst struct {
	Credit    uint64 // bytes, for read_bps and write_bps
	CreditOps uint64 // operations, for read_iops and write_iops
	ReadBPS   uint64
	WriteBPS  uint64
	ReadIOPS  uint64
	WriteIOPS uint64
}

// Unthrottled is a burst rate of "max": no limit while credit lasts. It is the
// kernel's own "no limit" value, never a valid limit.
const Unthrottled uint64 = 1<<64 - 1

// IsZero reports whether the block grants no burst at all.
func (b IOBurst) IsZero() bool { return b.Credit == 0 && b.CreditOps == 0 }

// Bounds of a credit: a burst is minutes of a fast disk, not a quota for the day. They
// also keep every bucket exact in the float64 the controller counts in (below 2^53).
const (
	MaxBurstCredit    uint64 = 1 << 40 // 1 TiB
	MaxBurstCreditOps uint64 = 1 << 30 // about a billion operations
)

// IOKey is one of the four throttle keys of an io block.
type IOKey int

const (
	KeyReadBPS IOKey = iota
	KeyWriteBPS
	KeyReadIOPS
	KeyWriteIOPS
)

// ioKeys ties each key to its HCL name and fields, in the order of the io block.
var ioKeys = []struct {
	key       IOKey
	name      string
	isBytes   bool
	sustained func(*IOLimits) *uint64
	rate      func(*IOBurst) *uint64
}{
	{KeyReadBPS, "read_bps", true, func(l *IOLimits) *uint64 { return &l.ReadBPS }, func(b *IOBurst) *uint64 { return &b.ReadBPS }},
	{KeyWriteBPS, "write_bps", true, func(l *IOLimits) *uint64 { return &l.WriteBPS }, func(b *IOBurst) *uint64 { return &b.WriteBPS }},
	{KeyReadIOPS, "read_iops", false, func(l *IOLimits) *uint64 { return &l.ReadIOPS }, func(b *IOBurst) *uint64 { return &b.ReadIOPS }},
	{KeyWriteIOPS, "write_iops", false, func(l *IOLimits) *uint64 { return &l.WriteIOPS }, func(b *IOBurst) *uint64 { return &b.WriteIOPS }},
}

func (k IOKey) String() string { return ioKeys[k].name }

// IsBytes reports whether the key is a bytes-per-second one.
func (k IOKey) IsBytes() bool { return ioKeys[k].isBytes }

// BurstKey is one key that bursts: its sustained rate, its burst rate (0: unthrottled
// while credit lasts) and the size of its bucket.
type BurstKey struct {
	Key       IOKey
	Sustained uint64
	Rate      uint64
	Credit    uint64
}

// BurstKeys lists the keys of the block that burst: named (or all of a kind none
// of whose keys is named), with a sustained rate, a credit of their kind and a burst
// rate above the sustained one. Rate 0 is unthrottled.
func (l IOLimits) BurstKeys() []BurstKey {
	explicit := l.explicitBurst()
	var out []BurstKey
	for _, k := range ioKeys {
		sustained, rate := *k.sustained(&l), *k.rate(&explicit)
		credit := explicit.CreditOps
		if k.isBytes {
			credit = explicit.Credit
		}
		if sustained == 0 || credit == 0 || rate <= sustained {
			// Not bursting, or no faster than the sustained rate: no burst.
			continue
		}
		if rate == Unthrottled {
			rate = 0
		}
		out = append(out, BurstKey{Key: k.key, Sustained: sustained, Rate: rate, Credit: credit})
	}
	return out
}

// explicitBurst names every bursting key: a kind with a credit and no named rate
// bursts on each of its sustained keys, unthrottled.
func (l IOLimits) explicitBurst() IOBurst {
	b := l.Burst
	for _, isBytes := range []bool{true, false} {
		credit := b.CreditOps
		if isBytes {
			credit = b.Credit
		}
		named := false
		for _, k := range ioKeys {
			named = named || (k.isBytes == isBytes && *k.rate(&b) != 0)
		}
		if credit == 0 || named {
			continue
		}
		for _, k := range ioKeys {
			if k.isBytes == isBytes && *k.sustained(&l) != 0 {
				*k.rate(&b) = Unthrottled
			}
		}
	}
	return b.normalized()
}

var burstSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "credit"}, {Name: "credit_ops"},
	{Name: "read_bps"}, {Name: "write_bps"}, {Name: "read_iops"}, {Name: "write_iops"},
}}

// decodeBursts reads the io block's burst blocks (at most one) into limits.Burst,
// once the sustained limits are known.
func (d *decoder) decodeBursts(blocks hcl.Blocks, limits *IOLimits) bool {
	ok := true
	for i, b := range blocks {
		if i > 0 {
			d.errorf(b.DefRange, "Duplicate burst block",
				"This io block already has a burst block at %s; put the credit and every burst rate in one.", rangeLine(blocks[0].DefRange))
			ok = false
			continue
		}
		ok = d.decodeBurst(b, limits) && ok
	}
	return ok
}

func (d *decoder) decodeBurst(b *hcl.Block, limits *IOLimits) bool {
	before := len(d.diags)
	content := d.content(b.Body, burstSchema)
	ok := len(d.diags) == before
	var burst IOBurst
	if limits.SelectsMounts() {
		d.errorf(b.DefRange, "Burst on a per-container device",
			"A burst needs a fixed device for now; device = %q is resolved per container. Put the burst in an io block naming a device label, a path or MAJ:MIN.", limits.Device)
		return false
	}
	credits := []struct {
		name    string
		isBytes bool
		into    *uint64
		bound   uint64
		example string
	}{
		{"credit", true, &burst.Credit, MaxBurstCredit, `credit = "1GiB"`},
		{"credit_ops", false, &burst.CreditOps, MaxBurstCreditOps, "credit_ops = 100000"},
	}
	for _, c := range credits {
		attr := content.Attributes[c.name]
		if attr == nil {
			continue
		}
		n, good := d.quantityValue(attr, c.isBytes)
		if !good {
			ok = false
			continue
		}
		switch {
		case n == 0:
			d.errorf(attr.Expr.Range(), "Burst credit of 0",
				"%s = 0 grants no burst; give a credit above 0, e.g. %s, or remove it.", c.name, c.example)
			ok = false
		case n > c.bound:
			d.errorf(attr.Expr.Range(), "Burst credit too large",
				"%s = %s is above %s, the largest credit criguard keeps: a burst is minutes of a fast disk, not a quota. Use a smaller credit, e.g. %s.",
				c.name, formatQuantity(n, c.isBytes), formatQuantity(c.bound, c.isBytes), c.example)
			ok = false
		default:
			*c.into = n
			if !hasSustained(*limits, c.isBytes) {
				kind, keys := "bps", "read_bps or write_bps"
				if !c.isBytes {
					kind, keys = "iops", "read_iops or write_iops"
				}
				d.errorf(attr.NameRange, "Burst credit without a sustained rate",
					"%s is spent above the sustained %s limits, and this io block sets none: set %s beside the burst block, or remove %s.", c.name, kind, keys, c.name)
				ok = false
			}
		}
	}
	for _, k := range ioKeys {
		attr := content.Attributes[k.name]
		if attr == nil {
			continue
		}
		rate, good := uint64(0), true
		if isMax(attr) {
			rate = Unthrottled
		} else if rate, good = d.quantityValue(attr, k.isBytes); !good {
			ok = false
			continue
		}
		sustained := *k.sustained(limits)
		credit, creditName := burst.CreditOps, "credit_ops = 100000"
		if k.isBytes {
			credit, creditName = burst.Credit, `credit = "1GiB"`
		}
		switch {
		case sustained == 0:
			d.errorf(attr.NameRange, "Burst rate without a sustained rate",
				"burst %s is the rate above the sustained %s while credit lasts, and this io block sets no %s. Set %s in the io block, or remove it here.", k.name, k.name, k.name, k.name)
			ok = false
		case rate == 0:
			d.errorf(attr.Expr.Range(), "Burst rate of 0",
				"A burst %s of 0 is no rate; write %s = \"max\" for an unthrottled burst, or a rate above the sustained one.", k.name, k.name)
			ok = false
		case rate < sustained:
			d.errorf(attr.Expr.Range(), "Burst rate below the sustained rate",
				"burst %s = %s is below the sustained %s = %s: a burst runs faster than the sustained rate. Raise it to at least %s, or write \"max\" for an unthrottled burst.",
				k.name, formatQuantity(rate, k.isBytes), k.name, formatQuantity(sustained, k.isBytes), formatQuantity(sustained, k.isBytes))
			ok = false
		case credit == 0 && ok:
			d.errorf(attr.NameRange, "Burst rate without a credit",
				"burst %s runs only while credit lasts, and this burst block grants none of its kind: add %s.", k.name, creditName)
			ok = false
		default:
			*k.rate(&burst) = rate
		}
	}
	if ok && burst.IsZero() {
		d.errorf(b.DefRange, "Burst block grants no credit",
			`A burst runs until its credit is spent: set credit = "1GiB" (for read_bps and write_bps) or credit_ops = 100000 (for read_iops and write_iops).`)
		ok = false
	}
	if ok {
		limits.Burst = burst
	}
	return ok
}

// isMax reports whether attr is the string "max".
func isMax(attr *hcl.Attribute) bool {
	v, diags := attr.Expr.Value(nil)
	return !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() && v.AsString() == "max"
}

func hasSustained(l IOLimits, isBytes bool) bool {
	if isBytes {
		return l.ReadBPS != 0 || l.WriteBPS != 0
	}
	return l.ReadIOPS != 0 || l.WriteIOPS != 0
}

// checkPodScopeBurst refuses a pod-scope rule whose class bursts: the burst loop
// works on containers' own cgroups, and a pod budget would silently not burst.
func (d *decoder) checkPodScopeBurst(rule *Rule, scopeRange hcl.Range) bool {
	class := d.policy.Classes[rule.Class]
	if rule.Scope != ScopePod || class == nil {
		return true
	}
	for _, l := range class.IO {
		if !l.Burst.IsZero() {
			d.errorf(scopeRange, "Burst in a pod-scope rule",
				"Class %q carries a burst (io on %s), and bursts apply to each container's own cgroup for now, not to a pod budget. Use scope = \"container\", or a class without a burst.", rule.Class, l.Target())
			return false
		}
	}
	return true
}

// tightestBurst is the stricter of two io blocks' bursts on one target: a key
// bursts only if both burst it, at the slower rate, with the smaller credit.
func tightestBurst(a, b IOLimits) IOBurst {
	ea, eb := a.explicitBurst(), b.explicitBurst()
	out := IOBurst{Credit: min(ea.Credit, eb.Credit), CreditOps: min(ea.CreditOps, eb.CreditOps)}
	for _, k := range ioKeys {
		*k.rate(&out) = min(*k.rate(&ea), *k.rate(&eb)) // 0, not named, is the smallest
	}
	return out.normalized()
}

// normalized drops the rates of a kind that has no credit.
func (b IOBurst) normalized() IOBurst {
	if b.Credit == 0 {
		b.ReadBPS, b.WriteBPS = 0, 0
	}
	if b.CreditOps == 0 {
		b.ReadIOPS, b.WriteIOPS = 0, 0
	}
	return b
}

// boundBursts keeps the tenant from buying a burst: every burst of the decision is
// at most the rule's on the same target (none where the rule's class has none, so an
// annotation never adds one), and a key whose sustained rate an annotation raised to
// its burst rate or above no longer bursts: BurstKeys skips a rate no faster than
// the sustained one.
func boundBursts(io, ruleIO []IOLimits) []IOLimits {
	out := make([]IOLimits, len(io))
	for i, l := range io {
		rule := IOLimits{Device: l.Device, Volumes: l.Volumes}
		for _, r := range ruleIO {
			if r.Target() == l.Target() {
				rule = r
			}
		}
		l.Burst = tightestBurst(l, rule)
		out[i] = l
	}
	return out
}
