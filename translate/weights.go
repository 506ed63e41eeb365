package translate

import (
	"cmp"
	"maps"
	"slices"

	"github.com/criguard/criguard/cgroup"
)

// WeightOwnership is what criguard holds of one cgroup's weight lines: the lines it
// wrote (file, device, value) and, for each, the line that stood there before
// (Value 0: none), which comes back when criguard lets the line go.
type WeightOwnership struct {
	Lines    []cgroup.WeightLine
	Previous []cgroup.WeightLine
}

// IsZero reports whether criguard holds no weight line.
func (o WeightOwnership) IsZero() bool { return len(o.Lines) == 0 }

// Equal reports whether a and b hold the same lines and remember the same.
func (o WeightOwnership) Equal(b WeightOwnership) bool {
	return slices.Equal(o.Lines, b.Lines) && slices.Equal(o.Previous, b.Previous)
}

// WeightChange is what one cgroup's weight lines must become.
type WeightChange struct {
	// Target holds the lines to write; Value 0 removes a line (the device falls
	// back to the cgroup's default).
	Target []cgroup.WeightLine
	// Owned is what criguard holds once Target is written.
	Owned WeightOwnership
}

type weightKey struct {
	file   string
	device cgroup.Device
}

// OwnedWeightChange brings a cgroup's weight lines from current (read back) to
// desired. A weight is a share, not a cap, so there is no "stricter" line to defer
// to: per file and device,
//   - a desired line is written (criguard owns it from then on); the value it
//     replaces is remembered, unless criguard's own value still stood there;
//   - a line criguard owns but no longer wants gets the remembered value back (none:
//     the line is removed), if criguard's value still stands; a value someone else
//     wrote since is theirs and stays;
//   - every other line (another tool's, or systemd's) stays as it is.
func OwnedWeightChange(current, desired []cgroup.WeightLine, owned WeightOwnership) WeightChange {
	cur, want := weightMap(current), weightMap(desired)
	own, prev := weightMap(owned.Lines), weightMap(owned.Previous)
	keys := map[weightKey]bool{}
	for _, m := range []map[weightKey]uint64{cur, want, own} {
		for k := range m {
			keys[k] = true
		}
	}
	var ch WeightChange
	for _, k := range slices.SortedFunc(maps.Keys(keys), compareWeightKey) {
		c, w, o, p := cur[k], want[k], own[k], prev[k]
		held := o != 0 && c == o
		switch {
		case w != 0:
			before := c
			if held {
				before = p
			}
			if c != w {
				ch.Target = append(ch.Target, cgroup.WeightLine{File: k.file, Device: k.device, Value: w})
			}
			ch.Owned.Lines = append(ch.Owned.Lines, cgroup.WeightLine{File: k.file, Device: k.device, Value: w})
			if before != 0 {
				ch.Owned.Previous = append(ch.Owned.Previous, cgroup.WeightLine{File: k.file, Device: k.device, Value: before})
			}
		case held:
			ch.Target = append(ch.Target, cgroup.WeightLine{File: k.file, Device: k.device, Value: p})
		}
	}
	return ch
}

// UnionWeightOwnership is everything owned in a or b, b winning where both hold a
// line: what the record must say while a change is being written.
func UnionWeightOwnership(a, b WeightOwnership) WeightOwnership {
	own, prev := weightMap(a.Lines), weightMap(a.Previous)
	bPrev := weightMap(b.Previous)
	for _, l := range b.Lines {
		k := weightKey{l.File, l.Device}
		own[k] = l.Value
		delete(prev, k)
		if p := bPrev[k]; p != 0 {
			prev[k] = p
		}
	}
	return WeightOwnership{Lines: weightLines(own), Previous: weightLines(prev)}
}

// ForeignWeights is the part of current criguard does not hold.
func ForeignWeights(current []cgroup.WeightLine, owned WeightOwnership) []cgroup.WeightLine {
	own := weightMap(owned.Lines)
	var out []cgroup.WeightLine
	for _, l := range current {
		if own[weightKey{l.File, l.Device}] != l.Value {
			out = append(out, l)
		}
	}
	return out
}

func weightMap(lines []cgroup.WeightLine) map[weightKey]uint64 {
	m := make(map[weightKey]uint64, len(lines))
	for _, l := range lines {
		if l.Value != 0 {
			m[weightKey{l.File, l.Device}] = l.Value
		}
	}
	return m
}

func weightLines(m map[weightKey]uint64) []cgroup.WeightLine {
	var out []cgroup.WeightLine
	for _, k := range slices.SortedFunc(maps.Keys(m), compareWeightKey) {
		out = append(out, cgroup.WeightLine{File: k.file, Device: k.device, Value: m[k]})
	}
	return out
}

func compareWeightKey(a, b weightKey) int {
	return cmp.Or(cmp.Compare(a.file, b.file), a.device.Compare(b.device))
}

// MergeWeights folds weights for the same disk (two policy devices may resolve to
// one) into the lowest, sorted by device.
func MergeWeights(weights []cgroup.IOWeight) []cgroup.IOWeight {
	byDevice := map[cgroup.Device]uint64{}
	for _, w := range weights {
		if have, ok := byDevice[w.Device]; !ok || w.Weight < have {
			byDevice[w.Device] = w.Weight
		}
	}
	out := make([]cgroup.IOWeight, 0, len(byDevice))
	for _, d := range slices.SortedFunc(maps.Keys(byDevice), cgroup.Device.Compare) {
		out = append(out, cgroup.IOWeight{Device: d, Weight: byDevice[d]})
	}
	return out
}
