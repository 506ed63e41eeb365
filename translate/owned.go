package translate

import (
	"maps"
	"slices"

	"github.com/criguard/criguard/cgroup"
)

// Change is what one cgroup's limits must become, given who wrote what.
type Change struct {
	// Target holds, for every device whose limits change, all four keys as they
	// must be after the change; devices that stay as they are are absent.
	Target []cgroup.IOLimit
	// Owned is what criguard owns once Target is written: the keys it set.
	Owned []cgroup.IOLimit
}

// InSync reports whether nothing needs writing.
func (c Change) InSync() bool { return len(c.Target) == 0 }

// OwnedChange brings a cgroup from current (read back) to desired, touching only what
// criguard owns: owned is what it wrote there before. Per device and key:
//   - a desired limit is written (criguard owns it from then on), unless someone else
//     has written a stricter one there: that stays theirs, for criguard only tightens;
//   - a key criguard owns but no longer wants is cleared, if it still holds
//     criguard's value; a value someone else has written since is theirs;
//   - anything else (a limit another tool wrote, or none) stays as it is.
func OwnedChange(current, desired, owned []cgroup.IOLimit) Change {
	cur, own, want := byDevice(current), byDevice(owned), byDevice(MergeLimits(desired))
	devices := slices.SortedFunc(maps.Keys(unionKeys(cur, own, want)), compareDevice)
	var ch Change
	for _, d := range devices {
		c, o, w := cur[d], own[d], want[d]
		target, nowOwned := c, cgroup.IOLimit{Device: d}
		target.Device = d
		for _, k := range limitKeys {
			switch {
			case *k(&w) != 0 && *k(&c) != 0 && *k(&c) != *k(&o) && *k(&c) < *k(&w):
				// A stricter foreign value: kept, not owned.
			case *k(&w) != 0:
				*k(&target), *k(&nowOwned) = *k(&w), *k(&w)
			case *k(&o) != 0 && *k(&c) == *k(&o):
				*k(&target) = 0
			}
		}
		if target != withDevice(c, d) {
			ch.Target = append(ch.Target, target)
		}
		if !nowOwned.IsZero() {
			ch.Owned = append(ch.Owned, nowOwned)
		}
	}
	return ch
}

// Foreign is the part of current that criguard does not own: limits another tool wrote.
func Foreign(current, owned []cgroup.IOLimit) []cgroup.IOLimit {
	own := byDevice(owned)
	var out []cgroup.IOLimit
	for _, c := range current {
		o, f := own[c.Device], cgroup.IOLimit{Device: c.Device}
		for _, k := range limitKeys {
			if *k(&c) != 0 && *k(&c) != *k(&o) {
				*k(&f) = *k(&c)
			}
		}
		if !f.IsZero() {
			out = append(out, f)
		}
	}
	return out
}

var limitKeys = []func(*cgroup.IOLimit) *uint64{
	func(l *cgroup.IOLimit) *uint64 { return &l.ReadBPS },
	func(l *cgroup.IOLimit) *uint64 { return &l.WriteBPS },
	func(l *cgroup.IOLimit) *uint64 { return &l.ReadIOPS },
	func(l *cgroup.IOLimit) *uint64 { return &l.WriteIOPS },
}

func byDevice(limits []cgroup.IOLimit) map[cgroup.Device]cgroup.IOLimit {
	m := make(map[cgroup.Device]cgroup.IOLimit, len(limits))
	for _, l := range limits {
		m[l.Device] = l
	}
	return m
}

func unionKeys(maps ...map[cgroup.Device]cgroup.IOLimit) map[cgroup.Device]bool {
	out := map[cgroup.Device]bool{}
	for _, m := range maps {
		for d := range m {
			out[d] = true
		}
	}
	return out
}

func withDevice(l cgroup.IOLimit, d cgroup.Device) cgroup.IOLimit {
	l.Device = d
	return l
}

// UnionOwned is everything owned in a or b, b's value winning for a key both hold.
func UnionOwned(a, b []cgroup.IOLimit) []cgroup.IOLimit {
	byDev := byDevice(a)
	for _, l := range b {
		u := byDev[l.Device]
		u.Device = l.Device
		for _, k := range limitKeys {
			if *k(&l) != 0 {
				*k(&u) = *k(&l)
			}
		}
		byDev[l.Device] = u
	}
	out := make([]cgroup.IOLimit, 0, len(byDev))
	for _, d := range slices.SortedFunc(maps.Keys(byDev), compareDevice) {
		out = append(out, byDev[d])
	}
	return out
}
