// Package burst moves a container's I/O limit in force between its sustained rate
// and its burst rate, from the cgroup's own counters: a token bucket per container,
// device and key. The bucket law (bucket.go) and the set of buckets (controller.go)
// are pure; the runner (runner.go) samples, writes through an Enforcer and persists
// the credit left so that a restart never grants more.
package burst

import (
	"math"
	"time"

	"github.com/criguard/criguard/cgroup"
)

// Kind is the key a bucket works on: the limit it moves and the counter it reads.
type Kind int

const (
	ReadBPS Kind = iota
	WriteBPS
	ReadIOPS
	WriteIOPS
)

var kindNames = [...]string{"rbps", "wbps", "riops", "wiops"}

func (k Kind) String() string { return kindNames[k] }

// ParseKind is the inverse of String.
func ParseKind(s string) (Kind, bool) {
	for i, name := range kindNames {
		if name == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Field is the key's value in a limit.
func (k Kind) Field(l *cgroup.IOLimit) *uint64 {
	switch k {
	case ReadBPS:
		return &l.ReadBPS
	case WriteBPS:
		return &l.WriteBPS
	case ReadIOPS:
		return &l.ReadIOPS
	}
	return &l.WriteIOPS
}

// Counter is the key's counter in a device's usage: bytes or operations so far.
func (k Kind) Counter(s cgroup.IOStat) uint64 {
	switch k {
	case ReadBPS:
		return s.ReadBytes
	case WriteBPS:
		return s.WriteBytes
	case ReadIOPS:
		return s.ReadIOs
	}
	return s.WriteIOs
}

// Spec is what the policy gives one key: its sustained rate, its burst rate (0: no
// limit while credit lasts) and the size of its bucket, in bytes or operations.
type Spec struct {
	Sustained, Burst, Credit uint64
}

// The control law's constants (docs/policy.md, "Burst credit").
const (
	// ReopenFraction: a spent bucket bursts again once it holds this much of its
	// credit. The gap between "spent" (0) and this is the hysteresis that keeps a
	// workload running at its sustained rate from flapping.
	ReopenFraction = 0.5
	// DebtFraction: how far below zero an overshoot may leave a bucket (of its
	// credit). A tick at an unthrottled burst can spend more than was left; the debt
	// is repaid at the sustained rate before the next burst.
	DebtFraction = 1.0
)

// Reason says why the limit in force changed; it is a metric label.
type Reason string

const (
	ReasonCreditSpent    Reason = "credit_spent"
	ReasonCreditRefilled Reason = "credit_refilled"
	ReasonPolicyChanged  Reason = "policy_changed"
	// ReasonNewBucket: the first limit in force of a bucket that starts with enough
	// credit to burst (a new container, or credit restored after a restart).
	ReasonNewBucket Reason = "new_bucket"
)

// Bucket is one key's token bucket. Credit is in bytes or operations.
type Bucket struct {
	Spec     Spec
	Credit   float64
	Bursting bool
	counter  uint64 // the counter at the last step
	primed   bool   // counter holds a sample
}

// NewBucket returns a bucket holding credit (bounded by the spec), bursting if it
// holds enough to reopen.
func NewBucket(spec Spec, credit float64) *Bucket {
	b := &Bucket{Spec: spec}
	b.Credit = b.bounded(credit)
	b.Bursting = b.Credit >= b.reopenAt()
	return b
}

// Limit is the limit in force: the burst rate while bursting (0: no limit), the
// sustained rate otherwise.
func (b *Bucket) Limit() uint64 {
	if b.Bursting {
		return b.Spec.Burst
	}
	return b.Spec.Sustained
}

func (b *Bucket) reopenAt() float64 { return ReopenFraction * float64(b.Spec.Credit) }

func (b *Bucket) bounded(credit float64) float64 {
	c := float64(b.Spec.Credit)
	return math.Max(-DebtFraction*c, math.Min(credit, c))
}

// Prime takes counter as the baseline the next step counts from.
func (b *Bucket) Prime(counter uint64) { b.counter, b.primed = counter, true }

// Step is one sample dt after the last: counter is the key's counter now. The
// bucket earns the sustained rate times dt and pays what was used, within
// [-DebtFraction*Credit, Credit]. Bursting stops when the next tick at the rate just
// seen would overdraw; it starts again when the bucket holds ReopenFraction of its
// credit. A counter below the last one means the cgroup was recreated: what it
// counts since is charged. Step reports whether the limit in force changed, and why.
func (b *Bucket) Step(counter uint64, dt time.Duration) (Reason, bool) {
	if !b.primed {
		b.Prime(counter)
		return "", false
	}
	secs := dt.Seconds()
	if secs <= 0 {
		return "", false // the use is counted at the next step
	}
	used := counter - b.counter
	if counter < b.counter {
		used = counter
	}
	b.counter = counter
	sustained := float64(b.Spec.Sustained)
	b.Credit = b.bounded(b.Credit + sustained*secs - float64(used))
	if b.Bursting {
		rate := float64(used) / secs
		if b.Spec.Burst != 0 {
			rate = math.Min(rate, float64(b.Spec.Burst))
		}
		nextSpend := math.Max(rate-sustained, 0) * secs
		if b.Credit <= nextSpend {
			b.Bursting = false
			return ReasonCreditSpent, b.Spec.Burst != b.Spec.Sustained
		}
		return "", false
	}
	if b.Credit >= b.reopenAt() {
		b.Bursting = true
		return ReasonCreditRefilled, b.Spec.Burst != b.Spec.Sustained
	}
	return "", false
}

// SetSpec takes a new spec (a policy reload): the credit is bounded by the new size
// and never grows.
func (b *Bucket) SetSpec(spec Spec) {
	b.Spec = spec
	b.Credit = b.bounded(b.Credit)
	if b.Bursting && b.Credit <= 0 {
		b.Bursting = false
	}
}
