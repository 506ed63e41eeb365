package burst

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/criguard/criguard/cgroup"
)

// Line is one key of a container that bursts.
type Line struct {
	Device cgroup.Device
	Kind   Kind
	Spec   Spec
}

// Target is a running container whose limits burst: where its cgroup is and which
// keys burst. Fresh says it started while criguard ran: its buckets start full.
// Any other container starts with what the state file says was left, or nothing.
type Target struct {
	Container string
	Dir       string
	Fresh     bool
	Lines     []Line
}

// Key names one bucket.
type Key struct {
	Container string
	Device    cgroup.Device
	Kind      Kind
}

// Change is one change of a limit in force. From and To are limits (0: none).
type Change struct {
	Key      Key
	From, To uint64
	Reason   Reason
	Credit   float64 // what the bucket holds after the step
}

// Controller holds every bucket. It does no I/O: the runner feeds it counters and
// writes what it decides; the planner asks it for the limits in force.
type Controller struct {
	mu      sync.Mutex
	buckets map[Key]*Bucket
	// restored is the state file's credit, for buckets not made yet.
	restored map[Key]Saved
}

// NewController returns a controller that starts each bucket named in saved with
// the credit left there.
func NewController(saved []Saved) *Controller {
	c := &Controller{buckets: map[Key]*Bucket{}, restored: map[Key]Saved{}}
	for _, s := range saved {
		c.restored[s.Key] = s
	}
	return c
}

// Observe is one tick of one target: stats are its cgroup's counters now and dt the
// time since the last tick (0 on the first: it only takes the baseline). Buckets
// are made as the target names them and follow its spec.
func (c *Controller) Observe(t Target, stats []cgroup.IOStat, dt time.Duration) []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	byDevice := make(map[cgroup.Device]cgroup.IOStat, len(stats))
	for _, s := range stats {
		byDevice[s.Device] = s
	}
	var changes []Change
	for _, line := range t.Lines {
		key := Key{Container: t.Container, Device: line.Device, Kind: line.Kind}
		// A device the cgroup has not touched yet has no line in the stats: zero.
		counter := line.Kind.Counter(byDevice[line.Device])
		b, ok := c.buckets[key]
		if !ok {
			b = c.newBucket(key, line.Spec, t.Fresh, counter)
			c.buckets[key] = b
			if to := b.Limit(); to != line.Spec.Sustained {
				changes = append(changes, Change{Key: key, From: line.Spec.Sustained, To: to, Reason: ReasonNewBucket, Credit: b.Credit})
			}
			continue
		}
		from := b.Limit()
		if b.Spec != line.Spec {
			b.SetSpec(line.Spec)
			if to := b.Limit(); to != from {
				changes = append(changes, Change{Key: key, From: from, To: to, Reason: ReasonPolicyChanged, Credit: b.Credit})
				from = to
			}
		}
		if reason, changed := b.Step(counter, dt); changed {
			changes = append(changes, Change{Key: key, From: from, To: b.Limit(), Reason: reason, Credit: b.Credit})
		}
	}
	// Keys the policy no longer bursts go back to what the plan says.
	for key := range c.buckets {
		if key.Container == t.Container && !slices.ContainsFunc(t.Lines, func(l Line) bool { return l.Device == key.Device && l.Kind == key.Kind }) {
			delete(c.buckets, key)
		}
	}
	return changes
}

// newBucket starts a bucket: with the credit left in the state file, less what the
// counters say was used since it was saved (no refill for the time criguard was
// away); full for a fresh container; otherwise empty.
func (c *Controller) newBucket(key Key, spec Spec, fresh bool, counter uint64) *Bucket {
	credit := 0.0
	if saved, ok := c.restored[key]; ok {
		delete(c.restored, key)
		used := counter - saved.Counter
		if counter < saved.Counter {
			used = counter // the cgroup was recreated
		}
		credit = saved.Credit - float64(used)
	} else if fresh {
		credit = float64(spec.Credit)
	}
	b := NewBucket(spec, credit)
	b.Prime(counter)
	return b
}

// Retain drops the buckets of containers not in live: gone, or no longer bursting.
func (c *Controller) Retain(live map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.buckets, func(k Key, _ *Bucket) bool { return !live[k.Container] })
}

// ExpireRestored drops the state file's credit that no bucket claimed: containers
// that did not come back.
func (c *Controller) ExpireRestored() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.restored)
}

// InForce is the limit in force for one key, and whether a bucket holds it.
func (c *Controller) InForce(key Key) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[key]
	if !ok {
		return 0, false
	}
	return b.Limit(), true
}

// Credit is what one bucket holds, and whether there is one.
func (c *Controller) Credit(key Key) (float64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[key]
	if !ok {
		return 0, false
	}
	return b.Credit, true
}

// empty reports whether the controller holds no bucket and no restored credit.
func (c *Controller) empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buckets) == 0 && len(c.restored) == 0
}

// Buckets counts the buckets.
func (c *Controller) Buckets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buckets)
}

// LimitsInForce lays the limits in force over a plan's limits for the target: each
// bursting key that still holds its sustained rate takes the bucket's limit. A key
// something stricter holds (another rule, a foreign limit merged in) stays, and so
// does every key without a bucket: a new container starts at its sustained rate
// until the runner's next tick.
func (c *Controller) LimitsInForce(t Target, limits []cgroup.IOLimit) []cgroup.IOLimit {
	out := slices.Clone(limits)
	for _, line := range t.Lines {
		i := slices.IndexFunc(out, func(l cgroup.IOLimit) bool { return l.Device == line.Device })
		if i < 0 {
			continue
		}
		field := line.Kind.Field(&out[i])
		if *field != line.Spec.Sustained {
			continue
		}
		if limit, ok := c.InForce(Key{Container: t.Container, Device: line.Device, Kind: line.Kind}); ok {
			*field = limit
		}
	}
	return out
}

// Snapshot is what to save: every primed bucket's credit and counter, and the
// restored credit no bucket has claimed yet.
func (c *Controller) Snapshot() []Saved {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Saved, 0, len(c.buckets)+len(c.restored))
	for key, b := range c.buckets {
		out = append(out, Saved{Key: key, Credit: b.Credit, Counter: b.counter})
	}
	for _, s := range c.restored {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Saved) int { return compareKeys(a.Key, b.Key) })
	return out
}

func compareKeys(a, b Key) int {
	return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Device.Major, b.Device.Major),
		cmp.Compare(a.Device.Minor, b.Device.Minor), cmp.Compare(a.Kind, b.Kind))
}
