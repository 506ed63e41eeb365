package policy

import (
	"github.com/hashicorp/hcl/v2"
)

// IOBurst lets an io block's keys run above their sustained rate until a credit is
// spent; the credit refills at the sustained rate while the workload runs below it.
// Credit gives every bps key of the block a bucket of that many bytes, CreditOps
// every iops key a bucket of that many operations. The rates are the most the key
// may run at while credit lasts; 0 is unthrottled. The zero value is no burst.
type IOBurst struct {
	Credit    uint64 // bytes, for read_bps and write_bps
	CreditOps uint64 // operations, for read_iops and write_iops
	ReadBPS   uint64
	WriteBPS  uint64
	ReadIOPS  uint64
	WriteIOPS uint64
}

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

// BurstKeys lists the keys of the block that burst: those with a sustained rate and a
// credit of their kind.
func (l IOLimits) BurstKeys() []BurstKey {
	var out []BurstKey
	for _, k := range ioKeys {
		sustained := *k.sustained(&l)
		credit := l.Burst.CreditOps
		if k.isBytes {
			credit = l.Burst.Credit
		}
		rate := *k.rate(&l.Burst)
		if sustained == 0 || credit == 0 || (rate != 0 && rate <= sustained) {
			// A burst no faster than the sustained rate is none.
			continue
		}
		out = append(out, BurstKey{Key: k.key, Sustained: sustained, Rate: rate, Credit: credit})
	}
	return out
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
		rate, good := d.quantityValue(attr, k.isBytes)
		if !good {
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
				"A burst %s of 0 would read as unthrottled; leave %s out of the burst block for an unthrottled burst.", k.name, k.name)
			ok = false
		case rate < sustained:
			d.errorf(attr.Expr.Range(), "Burst rate below the sustained rate",
				"burst %s = %s is below the sustained %s = %s: a burst runs faster than the sustained rate. Raise it to at least %s, or remove it for an unthrottled burst.",
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

// tightestBurst is the stricter of two bursts on one key set: none beats any, the
// smaller credit and the slower rate (0 is unthrottled, the loosest) win.
func tightestBurst(a, b IOBurst) IOBurst {
	out := IOBurst{Credit: smallerCredit(a.Credit, b.Credit), CreditOps: smallerCredit(a.CreditOps, b.CreditOps)}
	for _, k := range ioKeys {
		*k.rate(&out) = tightest(*k.rate(&a), *k.rate(&b))
	}
	return out.normalized()
}

// smallerCredit is the smaller credit, where 0 (no burst) is the smallest.
func smallerCredit(a, b uint64) uint64 { return min(a, b) }

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
		var ruleBurst IOBurst
		for _, r := range ruleIO {
			if r.Target() == l.Target() {
				ruleBurst = r.Burst
			}
		}
		l.Burst = tightestBurst(l.Burst, ruleBurst)
		out[i] = l
	}
	return out
}
