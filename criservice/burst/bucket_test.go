package burst

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const (
	mib  = 1 << 20
	tick = time.Second
)

// sim is a cgroup throttled at the bucket's limit in force: each tick it moves the
// smaller of what the workload asks and what the limit (or the disk) lets through,
// and the bucket steps on the counter.
type sim struct {
	t       *testing.T
	b       *Bucket
	counter uint64
	disk    float64        // the disk's own speed, bytes/s: an unthrottled burst runs at it
	jitter  func() float64 // a throttle's error: moved is limit*(1+jitter) at the limit
	changes []Reason
	moved   float64 // bytes moved so far
}

func newSim(t *testing.T, spec Spec, credit float64) *sim {
	s := &sim{t: t, b: NewBucket(spec, credit), disk: 1000 * mib}
	s.b.Prime(0)
	return s
}

// run asks demand(i) bytes/s for n ticks and checks the bounds at every one.
func (s *sim) run(n int, demand func(i int) float64) {
	s.t.Helper()
	for i := range n {
		limit := float64(s.b.Limit())
		if limit == 0 {
			limit = s.disk
		}
		moved := math.Min(demand(i), limit) * tick.Seconds()
		if s.jitter != nil && demand(i) >= limit {
			moved *= 1 + s.jitter()
		}
		s.counter += uint64(moved)
		s.moved += moved
		if reason, changed := s.b.Step(s.counter, tick); changed {
			s.changes = append(s.changes, reason)
		}
		s.checkBounds()
	}
}

func (s *sim) checkBounds() {
	s.t.Helper()
	spec, l := s.b.Spec, s.b.Limit()
	if l != spec.Sustained && l != spec.Burst {
		s.t.Fatalf("limit in force %d is neither the sustained %d nor the burst %d", l, spec.Sustained, spec.Burst)
	}
	if l != 0 && l < spec.Sustained {
		s.t.Fatalf("limit in force %d below the sustained %d", l, spec.Sustained)
	}
	if spec.Burst != 0 && (l == 0 || l > spec.Burst) {
		s.t.Fatalf("limit in force %d above the burst rate %d", l, spec.Burst)
	}
	c := float64(spec.Credit)
	if s.b.Credit > c || s.b.Credit < -DebtFraction*c {
		s.t.Fatalf("credit %.0f outside [%.0f, %.0f]", s.b.Credit, -DebtFraction*c, c)
	}
}

func constant(rate float64) func(int) float64 { return func(int) float64 { return rate } }

// A workload that wants more than its burst rate: it bursts until the credit is
// spent, then runs at the sustained rate for good, with one change and no more.
func TestBucketSpendsThenHoldsSustainedWithoutOscillation(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	s := newSim(t, spec, float64(spec.Credit))
	if !s.b.Bursting {
		t.Fatal("a full bucket does not burst")
	}
	s.run(600, constant(200*mib))
	if len(s.changes) != 1 || s.changes[0] != ReasonCreditSpent {
		t.Fatalf("changes = %v, want one credit_spent under steady load", s.changes)
	}
	// Over the whole run no more than the credit plus the sustained rate passed.
	if allowed := float64(spec.Credit) + float64(spec.Sustained)*600; s.moved > allowed {
		t.Errorf("moved %.0f MiB, more than credit + sustained = %.0f MiB", s.moved/mib, allowed/mib)
	}
	// It burst: 40 MiB/s above sustained for the 100 MiB credit is two full ticks
	// (the third would overdraw), so it moved 2*50 + 598*10 MiB.
	if want := float64(2*50+598*10) * mib; s.moved != want {
		t.Errorf("moved %.0f MiB, want %.0f MiB: two ticks at the burst rate, then sustained", s.moved/mib, want/mib)
	}
}

func TestBucketBelowSustainedNeverChanges(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	s := newSim(t, spec, float64(spec.Credit))
	s.run(600, constant(9*mib))
	if len(s.changes) != 0 || !s.b.Bursting || s.b.Credit != float64(spec.Credit) {
		t.Errorf("changes %v, bursting %v, credit %.0f: a workload below its sustained rate keeps a full bucket", s.changes, s.b.Bursting, s.b.Credit)
	}
}

// At its sustained rate with noise (a real throttle is never exact), a spent bucket
// does not flap: the reopen threshold is far above what noise adds up to.
func TestBucketNoiseAtSustainedDoesNotFlap(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	s := newSim(t, spec, 0)
	if s.b.Bursting {
		t.Fatal("an empty bucket bursts")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// The workload asks more than its sustained rate; the throttle lets through
	// the sustained rate, give or take 5 % each tick.
	s.jitter = func() float64 { return 0.1*rng.Float64() - 0.05 }
	s.run(3600, constant(30*mib))
	if len(s.changes) != 0 {
		t.Errorf("changes = %v over an hour of steady load at the sustained rate, want none", s.changes)
	}
}

// After the credit is spent, an idle workload earns it back at the sustained rate:
// it bursts again at half the credit and holds all of it after Credit/Sustained.
func TestBucketRefillsAfterIdle(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	s := newSim(t, spec, float64(spec.Credit))
	s.run(10, constant(200*mib))
	if s.b.Bursting {
		t.Fatal("still bursting after the credit is spent")
	}
	credit := s.b.Credit
	ticksToReopen := int(math.Ceil((ReopenFraction*float64(spec.Credit) - credit) / float64(spec.Sustained)))
	s.run(ticksToReopen-1, constant(0))
	if s.b.Bursting {
		t.Fatalf("bursting again after %d idle ticks, before holding half the credit (%.0f)", ticksToReopen-1, s.b.Credit)
	}
	s.run(1, constant(0))
	if !s.b.Bursting || s.changes[len(s.changes)-1] != ReasonCreditRefilled {
		t.Fatalf("not bursting after %d idle ticks with %.0f MiB of credit", ticksToReopen, s.b.Credit/mib)
	}
	s.run(10, constant(0))
	if s.b.Credit != float64(spec.Credit) {
		t.Errorf("credit %.0f after a long idle, want full %d", s.b.Credit, spec.Credit)
	}
	// The second burst is as long as the first: two ticks at 50 MiB/s.
	before, moved := len(s.changes), s.moved
	s.run(3, constant(200*mib))
	if got := (s.moved - moved) / mib; got != 2*50+10 {
		t.Errorf("the second burst moved %.0f MiB in 3 ticks, want 2*50+10", got)
	}
	if len(s.changes) != before+1 {
		t.Errorf("changes %v, want one credit_spent", s.changes[before:])
	}
}

// An unthrottled burst can overshoot in the tick it ends: the overshoot is a debt,
// repaid at the sustained rate before the next burst.
func TestBucketUnthrottledOvershootIsDebt(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 0, Credit: 100 * mib}
	s := newSim(t, spec, float64(spec.Credit))
	s.disk = 300 * mib
	s.run(1, constant(1000*mib))
	if s.b.Bursting || s.b.Credit >= 0 {
		t.Fatalf("after one tick at the disk's 300 MiB/s with 100 MiB of credit: bursting %v, credit %.0f MiB", s.b.Bursting, s.b.Credit/mib)
	}
	if want := -100.0 * mib; s.b.Credit != want {
		t.Errorf("debt %.0f MiB, want it bounded at -%d%% of the credit", s.b.Credit/mib, int(DebtFraction*100))
	}
	// 100 MiB of debt and 50 MiB to reopen at 10 MiB/s idle: 15 ticks.
	s.run(14, constant(0))
	if s.b.Bursting {
		t.Fatal("burst again before the debt was repaid")
	}
	s.run(1, constant(0))
	if !s.b.Bursting {
		t.Fatalf("not bursting after the debt was repaid and half the credit earned: %.0f MiB", s.b.Credit/mib)
	}
}

// A counter that goes back (the cgroup was made anew) charges what the new one
// counts, never a wrapped difference and never a refund.
func TestBucketCounterReset(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	b := NewBucket(spec, 60*mib)
	b.Prime(5000 * mib)
	b.Step(5030*mib, tick) // 30 used, 10 earned
	if b.Credit != 40*mib {
		t.Fatalf("credit %.0f MiB, want 40", b.Credit/mib)
	}
	b.Step(25*mib, tick) // new cgroup: 25 used since, 10 earned
	if b.Credit != 25*mib {
		t.Errorf("credit after a counter reset %.0f MiB, want 40+10-25 = 25", b.Credit/mib)
	}
	b.Step(25*mib, tick)
	if b.Credit != 35*mib {
		t.Errorf("credit %.0f MiB after an idle tick, want 35", b.Credit/mib)
	}
}

// A late tick earns and charges what really passed; a zero one does nothing.
func TestBucketUsesTheMeasuredInterval(t *testing.T) {
	spec := Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}
	b := NewBucket(spec, 0)
	b.Prime(0)
	b.Step(0, 3*time.Second)
	if b.Credit != 30*mib {
		t.Errorf("credit %.0f MiB after 3 idle seconds, want 30", b.Credit/mib)
	}
	b.Step(10*mib, 0)
	if b.Credit != 30*mib {
		t.Errorf("a zero interval changed the credit to %.0f MiB", b.Credit/mib)
	}
	b.Step(10*mib, time.Second)
	if b.Credit != 30*mib {
		t.Errorf("credit %.0f MiB, want 30+10-10: the 10 MiB seen at the zero-length step must be charged once, not lost or doubled", b.Credit/mib)
	}
}

func TestBucketSpecShrinkNeverGrantsMore(t *testing.T) {
	b := NewBucket(Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}, 100*mib)
	b.SetSpec(Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 20 * mib})
	if b.Credit != 20*mib {
		t.Errorf("credit %.0f MiB after the credit shrank to 20 MiB", b.Credit/mib)
	}
	b.SetSpec(Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 500 * mib})
	if b.Credit != 20*mib {
		t.Errorf("credit %.0f MiB: a larger credit must be earned, not granted", b.Credit/mib)
	}
}
