package criservice

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/translate"
)

// Usage is one cgroup at one instant: the limits in force, read back from its
// files, the I/O it did since it was created and, on v2, its I/O pressure.
type Usage struct {
	Kind      string           `json:"kind"` // container, or pod for a pod's cgroup holding a budget
	ID        string           `json:"id"`
	PodID     string           `json:"podId"`
	Namespace string           `json:"namespace"`
	Pod       string           `json:"pod"`
	Container string           `json:"container,omitempty"`
	Dir       string           `json:"cgroupDir"`
	Limits    []cgroup.IOLimit `json:"limits"`
	// ClassLimits are the class's limits, where the loops' limits in force (Limits)
	// may differ: a burst raises a key, protection lowers one. Containers only, once planned.
	ClassLimits []cgroup.IOLimit `json:"classLimits,omitempty"`
	Stats       []cgroup.IOStat  `json:"stats"`
	Pressure    *cgroup.Pressure `json:"pressure,omitempty"`
	At          time.Time        `json:"at"`
}

// SampleUsage reads the cgroup files of every container in the metadata cache
// whose cgroup is resolved, and of every pod cgroup that holds limits (v2 pod
// budgets; on v1 pod cgroups hold none). It makes no runtime call, so a scrape
// costs file reads only. A cgroup whose files cannot be read (its container
// is gone) is left out.
func (s *Reporter) SampleUsage() []Usage {
	containers, pods := s.store.snapshot()
	pressure, _ := s.io.(cgroup.PressureReader)
	out := make([]Usage, 0, len(containers))
	live := make(map[string]bool, len(containers))
	for _, ct := range containers {
		live[ct.ID] = true
		if ct.Dir == "" {
			continue
		}
		pod := pods[ct.PodID]
		u := Usage{Kind: "container", ID: ct.ID, PodID: ct.PodID, Namespace: pod.Namespace, Pod: pod.Name, Container: ct.Name, Dir: ct.Dir}
		u.ClassLimits, _ = s.planner.classLimitsOf(ct.ID)
		if s.readUsage(&u, pressure, false) {
			out = append(out, u)
		}
	}
	if !s.planner.splitPodBudget {
		for _, pod := range pods {
			if pod.CgroupParent == "" {
				continue
			}
			dir, err := translate.PodCgroupDir(s.io.Mount(), pod.CgroupParent)
			if err != nil {
				continue
			}
			u := Usage{Kind: "pod", ID: pod.ID, PodID: pod.ID, Namespace: pod.Namespace, Pod: pod.Name, Dir: dir}
			if s.readUsage(&u, pressure, true) {
				out = append(out, u)
			}
		}
	}
	s.planner.forgetClassLimits(live)
	slices.SortFunc(out, func(a, b Usage) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Container, b.Container), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// readUsage fills u from u.Dir; false when the cgroup cannot be read, or holds
// no limit and onlyLimited is set (a pod without a budget: its containers have rows).
func (s *Reporter) readUsage(u *Usage, pressure cgroup.PressureReader, onlyLimited bool) bool {
	var err error
	if u.Limits, err = s.io.Limits(u.Dir); err != nil || (onlyLimited && len(u.Limits) == 0) {
		return false
	}
	if u.Stats, err = s.io.Stats(u.Dir); err != nil {
		return false
	}
	if pressure != nil {
		// A kernel without PSI has no io.pressure: usage without pressure.
		if p, err := pressure.Pressure(u.Dir); err == nil {
			u.Pressure = &p
		}
	}
	u.At = time.Now()
	return true
}

// TrackRunning lists the running pods and containers into the metadata cache,
// forgets those gone and resolves the cgroup of each new container: what
// SampleUsage reads next. In the daemon the reconcile loop does this; `criguard
// top` calls it on every refresh.
func (s *Reporter) TrackRunning(ctx context.Context) error {
	gen := s.store.startListing()
	pods, containers, created, err := s.store.listRunning(ctx)
	if err != nil {
		return err
	}
	livePods := make(map[string]bool, len(pods))
	for _, p := range pods {
		livePods[p.ID] = true
	}
	liveContainers := created
	for _, id := range containers {
		liveContainers[id] = true
		if ct, ok := s.store.container(id); ok && ct.Dir != "" {
			continue // a container's cgroup never moves
		}
		if _, err := s.planner.planContainerID(ctx, id); err != nil {
			s.log.Debug("container cgroup not resolved; left out", "container", id, "err", err)
		}
	}
	s.store.retain(gen, livePods, liveContainers)
	return nil
}

// snapshot copies the cached containers, and the pods by ID, so that the
// files are read with no lock held.
func (c *cache) snapshot() ([]Container, map[string]Pod) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	containers := make([]Container, 0, len(c.containers))
	for _, ct := range c.containers {
		containers = append(containers, *ct)
	}
	pods := make(map[string]Pod, len(c.pods))
	for id, p := range c.pods {
		pods[id] = *p
	}
	return containers, pods
}

// Rate is a workload's I/O on one device between two samples, next to the
// limit in force on that device.
type Rate struct {
	Kind      string  `json:"kind"`
	ID        string  `json:"id"`
	Namespace string  `json:"namespace"`
	Pod       string  `json:"pod"`
	Container string  `json:"container,omitempty"`
	Device    string  `json:"device"` // "" for a cgroup with no I/O and no limit on any device
	Seconds   float64 `json:"seconds"`
	ReadBPS   float64 `json:"readBps"`
	WriteBPS  float64 `json:"writeBps"`
	ReadIOPS  float64 `json:"readIops"`
	WriteIOPS float64 `json:"writeIops"`
	Limit     Limit   `json:"limit"`
	// ClassLimit is the class's limit on the device, where Limit, the limit in force,
	// may differ (burst credit, protection); nil when not known (pod rows, not planned).
	ClassLimit *Limit `json:"classLimit,omitempty"`
	// PercentOfLimit is the busiest limited key's rate over its limit, in
	// percent; nil when the device has no limit.
	PercentOfLimit *float64 `json:"percentOfLimit"`
	// PressureSome and PressureFull are the percent of the interval in which
	// some (all) of the cgroup's tasks stalled on I/O; nil without io.pressure (v1).
	PressureSome *float64 `json:"pressureSome"`
	PressureFull *float64 `json:"pressureFull"`
}

// Limit is one device's limits; zero is no limit.
type Limit struct {
	ReadBPS   uint64 `json:"readBps"`
	WriteBPS  uint64 `json:"writeBps"`
	ReadIOPS  uint64 `json:"readIops"`
	WriteIOPS uint64 `json:"writeIops"`
}

// Rates turns two samples into rates per workload and device. A workload in
// only one of the samples has no rate and is left out; counters that went
// backwards count as zero.
func Rates(prev, cur []Usage) []Rate {
	before := make(map[string]Usage, len(prev))
	for _, u := range prev {
		before[u.Kind+"/"+u.ID] = u
	}
	var rates []Rate
	for _, u := range cur {
		p, ok := before[u.Kind+"/"+u.ID]
		seconds := u.At.Sub(p.At).Seconds()
		if !ok || seconds <= 0 {
			continue
		}
		base := Rate{Kind: u.Kind, ID: u.ID, Namespace: u.Namespace, Pod: u.Pod, Container: u.Container, Seconds: seconds}
		if u.Pressure != nil && p.Pressure != nil {
			base.PressureSome = stalledPercent(p.Pressure.Some.Total, u.Pressure.Some.Total, seconds)
			base.PressureFull = stalledPercent(p.Pressure.Full.Total, u.Pressure.Full.Total, seconds)
		}
		devices := usageDevices(u)
		if len(devices) == 0 {
			rates = append(rates, base)
			continue
		}
		for _, d := range devices {
			r := base
			r.Device = d.String()
			now, then := statOf(u.Stats, d), statOf(p.Stats, d)
			perSecond := func(a, b uint64) float64 {
				if a < b {
					return 0
				}
				return float64(a-b) / seconds
			}
			r.ReadBPS, r.WriteBPS = perSecond(now.ReadBytes, then.ReadBytes), perSecond(now.WriteBytes, then.WriteBytes)
			r.ReadIOPS, r.WriteIOPS = perSecond(now.ReadIOs, then.ReadIOs), perSecond(now.WriteIOs, then.WriteIOs)
			if u.ClassLimits != nil { // known: planned
				l, _ := limitOf(u.ClassLimits, d)
				r.ClassLimit = &Limit{ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS}
			}
			if l, ok := limitOf(u.Limits, d); ok {
				r.Limit = Limit{ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS}
				r.PercentOfLimit = percentOfLimit(r)
			}
			rates = append(rates, r)
		}
	}
	return rates
}

// usageDevices are the devices a cgroup did I/O on or has a limit on, sorted.
func usageDevices(u Usage) []cgroup.Device {
	var devices []cgroup.Device
	for _, s := range u.Stats {
		devices = append(devices, s.Device)
	}
	for _, l := range u.Limits {
		devices = append(devices, l.Device)
	}
	slices.SortFunc(devices, cgroup.Device.Compare)
	return slices.Compact(devices)
}

func statOf(stats []cgroup.IOStat, d cgroup.Device) cgroup.IOStat {
	for _, s := range stats {
		if s.Device == d {
			return s
		}
	}
	return cgroup.IOStat{Device: d}
}

func limitOf(limits []cgroup.IOLimit, d cgroup.Device) (cgroup.IOLimit, bool) {
	for _, l := range limits {
		if l.Device == d {
			return l, true
		}
	}
	return cgroup.IOLimit{}, false
}

// percentOfLimit is the highest rate-to-limit ratio over the keys that have a
// limit: a container at its write limit is held back whatever it reads.
func percentOfLimit(r Rate) *float64 {
	best, limited := 0.0, false
	for _, key := range []struct {
		rate  float64
		limit uint64
	}{{r.ReadBPS, r.Limit.ReadBPS}, {r.WriteBPS, r.Limit.WriteBPS}, {r.ReadIOPS, r.Limit.ReadIOPS}, {r.WriteIOPS, r.Limit.WriteIOPS}} {
		if key.limit == 0 {
			continue
		}
		limited = true
		best = max(best, 100*key.rate/float64(key.limit))
	}
	if !limited {
		return nil
	}
	return &best
}

func stalledPercent(before, after time.Duration, seconds float64) *float64 {
	p := 0.0
	if after > before {
		p = 100 * (after - before).Seconds() / seconds
	}
	return &p
}

// String names a rate's workload for people: "ns/pod/container" or "ns/pod (pod)".
func (r Rate) String() string {
	if r.Kind == "pod" {
		return fmt.Sprintf("%s/%s (pod)", r.Namespace, r.Pod)
	}
	return fmt.Sprintf("%s/%s/%s", r.Namespace, r.Pod, r.Container)
}
