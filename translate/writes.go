package translate

import (
	"slices"

	"github.com/criguard/criguard/cgroup"
)

// MergeLimits folds limits for the same device into one, keeping the
// tightest non-zero value of each key (two policy devices may resolve to the
// same disk), and sorts the result by device.
func MergeLimits(limits []cgroup.IOLimit) []cgroup.IOLimit {
	byDevice := map[cgroup.Device]cgroup.IOLimit{}
	for _, l := range limits {
		merged, seen := byDevice[l.Device]
		if !seen {
			byDevice[l.Device] = l
			continue
		}
		merged.ReadBPS = tightest(merged.ReadBPS, l.ReadBPS)
		merged.WriteBPS = tightest(merged.WriteBPS, l.WriteBPS)
		merged.ReadIOPS = tightest(merged.ReadIOPS, l.ReadIOPS)
		merged.WriteIOPS = tightest(merged.WriteIOPS, l.WriteIOPS)
		byDevice[l.Device] = merged
	}
	out := make([]cgroup.IOLimit, 0, len(byDevice))
	for _, l := range byDevice {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b cgroup.IOLimit) int { return a.Device.Compare(b.Device) })
	return out
}

// tightest returns the smaller limit, where 0 means "no limit".
func tightest(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// TightenIOMax is the limit a v2 runtime must write for want's device, given the
// unified io.max kubelet sent (have; set false when none): each key the stricter of
// the two, so kubelet's stricter keys stay and a looser one never passes. ok is
// false when have is to go on as it is: already as strict, about another disk (the
// kernel takes one device per write; criguard writes its own line to the file after
// the runtime), or not an io.max value at all (the runtime refuses it to kubelet).
func TightenIOMax(have string, set bool, want cgroup.IOLimit) (cgroup.IOLimit, bool) {
	if !set {
		return want, true
	}
	limits, err := cgroup.ParseIOMax(have)
	if err != nil {
		return cgroup.IOLimit{}, false
	}
	current := cgroup.IOLimit{Device: want.Device}
	for _, l := range limits {
		if l.Device != want.Device {
			return cgroup.IOLimit{}, false
		}
		current = l
	}
	tightened := MergeLimits([]cgroup.IOLimit{current, want})[0]
	return tightened, tightened != current
}
