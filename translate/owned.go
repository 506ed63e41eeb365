package translate

import (
	"maps"
	"slices"

	"github.com/criguard/criguard/cgroup"
)

// Ownership is what criguard holds in one cgroup: per device, the keys it wrote
// (Limits) and, for each of them, the value that stood there before it wrote
// (Previous, 0: none), which it puts back when it lets the key go.
type Ownership struct {
	Limits   []cgroup.IOLimit
	Previous []cgroup.IOLimit
}

// NewOwnership is limits owned, with previous kept only for the keys owned.
func NewOwnership(limits, previous []cgroup.IOLimit) Ownership {
	own, prev := byDevice(limits), byDevice(previous)
	var o Ownership
	for _, d := range slices.SortedFunc(maps.Keys(own), cgroup.Device.Compare) {
		l, p := own[d], prev[d]
		if l.IsZero() {
			continue
		}
		keep := cgroup.IOLimit{Device: d}
		for _, k := range limitKeys {
			if *k(&l) != 0 {
				*k(&keep) = *k(&p)
			}
		}
		o.Limits = append(o.Limits, withDevice(l, d))
		if !keep.IsZero() {
			o.Previous = append(o.Previous, keep)
		}
	}
	return o
}

// IsZero reports whether criguard holds nothing.
func (o Ownership) IsZero() bool { return len(o.Limits) == 0 }

// Equal reports whether a and b hold the same keys with the same values.
func (o Ownership) Equal(b Ownership) bool {
	return slices.Equal(o.Limits, b.Limits) && slices.Equal(o.Previous, b.Previous)
}

// Change is what one cgroup's limits must become, given who wrote what.
type Change struct {
	// Target holds, for every device whose limits change, all four keys as they
	// must be after the change; devices that stay as they are are absent.
	Target []cgroup.IOLimit
	// Owned is what criguard owns once Target is written: the keys it set, and what
	// stood before it set them.
	Owned Ownership
}

// InSync reports whether nothing needs writing.
func (c Change) InSync() bool { return len(c.Target) == 0 }

// InPlace says whose a value already in place, equal to the wanted one and not
// owned, may be. criguard adopts it either way; the difference is what comes back
// when it lets go.
type InPlace int

const (
	// InPlaceMaybeOurs: the runtime may have written it from a request criguard
	// rewrote (a container's io.max on cgroup v2, from CreateContainer's unified):
	// criguard's own, and letting go clears it.
	InPlaceMaybeOurs InPlace = iota
	// InPlaceForeign: only criguard's writer and other tools write there: another
	// tool's, remembered, and letting go leaves it.
	InPlaceForeign
)

// OwnedChange brings a cgroup from current (read back) to desired, touching only what
// criguard owns: owned is what it wrote there before, and what stood before it wrote.
// Per device and key:
//   - a desired limit is written (criguard owns it from then on), unless someone else
//     has written a stricter one there: that stays theirs, for criguard only tightens.
//     The value it overwrites is remembered; an equal value already in place is
//     adopted, and remembered only if it is InPlaceForeign;
//   - a key criguard owns but no longer wants, or whose remembered value is stricter
//     than the one now wanted, gets the remembered value back (none: cleared), if it
//     still holds criguard's value; a value someone else has written since is theirs;
//   - anything else (a limit another tool wrote, or none) stays as it is.
func OwnedChange(current, desired []cgroup.IOLimit, owned Ownership, equal InPlace) Change {
	cur, own, prev, want := byDevice(current), byDevice(owned.Limits), byDevice(owned.Previous), byDevice(MergeLimits(desired))
	devices := slices.SortedFunc(maps.Keys(unionKeys(cur, own, want)), cgroup.Device.Compare)
	var ch Change
	for _, d := range devices {
		c, o, p, w := cur[d], own[d], prev[d], want[d]
		target, nowOwned, nowPrevious := withDevice(c, d), cgroup.IOLimit{Device: d}, cgroup.IOLimit{Device: d}
		for _, k := range limitKeys {
			held := *k(&o) != 0 && *k(&c) == *k(&o)
			switch {
			case held && *k(&w) != 0 && (*k(&p) == 0 || *k(&p) >= *k(&w)):
				// criguard's own: brought to the wanted value, the memory kept.
				*k(&target), *k(&nowOwned), *k(&nowPrevious) = *k(&w), *k(&w), *k(&p)
			case held:
				// Let go: what stood before comes back.
				*k(&target) = *k(&p)
			case *k(&w) != 0 && *k(&c) != 0 && *k(&c) < *k(&w):
				// A stricter foreign value: kept, not owned.
			case *k(&w) != 0:
				*k(&target), *k(&nowOwned) = *k(&w), *k(&w)
				if *k(&c) != *k(&w) || equal == InPlaceForeign {
					*k(&nowPrevious) = *k(&c)
				}
			}
		}
		if target != withDevice(c, d) {
			ch.Target = append(ch.Target, target)
		}
		if !nowOwned.IsZero() {
			ch.Owned.Limits = append(ch.Owned.Limits, nowOwned)
		}
		if !nowPrevious.IsZero() {
			ch.Owned.Previous = append(ch.Owned.Previous, nowPrevious)
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

// UnionOwned is everything owned in a or b: for a key both hold, b's value and what
// b remembers stood before it win.
func UnionOwned(a, b Ownership) Ownership {
	own, prev := byDevice(a.Limits), byDevice(a.Previous)
	bPrev := byDevice(b.Previous)
	for _, l := range b.Limits {
		u, p, bp := own[l.Device], prev[l.Device], bPrev[l.Device]
		u.Device, p.Device = l.Device, l.Device
		for _, k := range limitKeys {
			if *k(&l) != 0 {
				*k(&u), *k(&p) = *k(&l), *k(&bp)
			}
		}
		own[l.Device], prev[l.Device] = u, p
	}
	return NewOwnership(slices.Collect(maps.Values(own)), slices.Collect(maps.Values(prev)))
}
