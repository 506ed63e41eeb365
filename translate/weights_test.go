package translate

import (
	"slices"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

func TestOwnedWeightChange(t *testing.T) {
	sda, vdb := cgroup.Device{Major: 8}, cgroup.Device{Major: 254, Minor: 16}
	line := func(d cgroup.Device, v uint64) cgroup.WeightLine {
		return cgroup.WeightLine{File: "io.bfq.weight", Device: d, Value: v}
	}
	lines := func(l ...cgroup.WeightLine) []cgroup.WeightLine { return l }
	tests := []struct {
		name             string
		current, desired []cgroup.WeightLine
		owned            WeightOwnership
		target           []cgroup.WeightLine
		own              WeightOwnership
	}{
		{name: "fresh: written and owned",
			desired: lines(line(sda, 181)), target: lines(line(sda, 181)),
			own: WeightOwnership{Lines: lines(line(sda, 181))}},
		{name: "in sync: nothing written",
			current: lines(line(sda, 181)), desired: lines(line(sda, 181)), owned: WeightOwnership{Lines: lines(line(sda, 181))},
			own: WeightOwnership{Lines: lines(line(sda, 181))}},
		{name: "another tool's line on another disk stays",
			current: lines(line(vdb, 50)), desired: lines(line(sda, 181)), target: lines(line(sda, 181)),
			own: WeightOwnership{Lines: lines(line(sda, 181))}},
		{name: "a foreign line replaced is remembered",
			current: lines(line(sda, 50)), desired: lines(line(sda, 181)), target: lines(line(sda, 181)),
			own: WeightOwnership{Lines: lines(line(sda, 181)), Previous: lines(line(sda, 50))}},
		{name: "letting go puts the foreign line back",
			current: lines(line(sda, 181)), owned: WeightOwnership{Lines: lines(line(sda, 181)), Previous: lines(line(sda, 50))},
			target: lines(line(sda, 50))},
		{name: "letting go of a line that stood alone removes it",
			current: lines(line(sda, 181)), owned: WeightOwnership{Lines: lines(line(sda, 181))},
			target: lines(line(sda, 0))},
		{name: "a line someone rewrote since is theirs when criguard lets go",
			current: lines(line(sda, 70)), owned: WeightOwnership{Lines: lines(line(sda, 181))}},
		{name: "a changed weight keeps the memory of what stood first",
			current: lines(line(sda, 181)), desired: lines(line(sda, 120)), owned: WeightOwnership{Lines: lines(line(sda, 181)), Previous: lines(line(sda, 50))},
			target: lines(line(sda, 120)), own: WeightOwnership{Lines: lines(line(sda, 120)), Previous: lines(line(sda, 50))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := OwnedWeightChange(tt.current, tt.desired, tt.owned)
			if !slices.Equal(ch.Target, tt.target) {
				t.Errorf("target %+v, want %+v", ch.Target, tt.target)
			}
			if !ch.Owned.Equal(tt.own) {
				t.Errorf("owned %+v, want %+v", ch.Owned, tt.own)
			}
		})
	}
}

func TestUnionAndForeignWeights(t *testing.T) {
	a := cgroup.WeightLine{File: "io.weight", Device: cgroup.Device{Major: 8}, Value: 300}
	b := cgroup.WeightLine{File: "io.weight", Device: cgroup.Device{Major: 8, Minor: 16}, Value: 50}
	u := UnionWeightOwnership(WeightOwnership{Lines: []cgroup.WeightLine{a}}, WeightOwnership{Lines: []cgroup.WeightLine{b}})
	if len(u.Lines) != 2 {
		t.Fatalf("union %+v, want both lines", u)
	}
	foreign := ForeignWeights([]cgroup.WeightLine{a, b}, WeightOwnership{Lines: []cgroup.WeightLine{a}})
	if !slices.Equal(foreign, []cgroup.WeightLine{b}) {
		t.Errorf("foreign %+v, want only %+v", foreign, b)
	}
	merged := MergeWeights([]cgroup.IOWeight{{Device: b.Device, Weight: 400}, {Device: a.Device, Weight: 500}, {Device: b.Device, Weight: 200}})
	if !slices.Equal(merged, []cgroup.IOWeight{{Device: a.Device, Weight: 500}, {Device: b.Device, Weight: 200}}) {
		t.Errorf("MergeWeights = %+v", merged)
	}
}
