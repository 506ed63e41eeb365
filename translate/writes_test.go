package translate

import (
	"slices"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

var (
	vda = cgroup.Device{Major: 254, Minor: 0}
	sda = cgroup.Device{Major: 8, Minor: 0}
)

func TestMergeLimitsKeepsTightest(t *testing.T) {
	got := MergeLimits([]cgroup.IOLimit{
		{Device: vda, ReadBPS: 100, WriteBPS: 0, ReadIOPS: 10},
		{Device: sda, WriteIOPS: 7},
		{Device: vda, ReadBPS: 200, WriteBPS: 50, ReadIOPS: 5},
	})
	want := []cgroup.IOLimit{
		{Device: sda, WriteIOPS: 7},
		{Device: vda, ReadBPS: 100, WriteBPS: 50, ReadIOPS: 5},
	}
	if !slices.Equal(got, want) {
		t.Errorf("MergeLimits = %+v, want %+v", got, want)
	}
}

func TestTightenIOMax(t *testing.T) {
	want := cgroup.IOLimit{Device: vda, ReadBPS: 2 << 20, WriteBPS: 1 << 20}
	tests := []struct {
		name   string
		have   string
		set    bool
		want   cgroup.IOLimit
		change bool
	}{
		{"none sent", "", false, want, true},
		{"all max", "254:0 rbps=max wbps=max riops=max wiops=max", true, want, true},
		{"empty", "", true, want, true},
		{"looser", "254:0 rbps=8388608 wbps=4194304", true, want, true},
		{"stricter kept, missing key added", "254:0 wbps=1", true, cgroup.IOLimit{Device: vda, ReadBPS: 2 << 20, WriteBPS: 1}, true},
		{"extra keys kept", "254:0 rbps=max wbps=max riops=max wiops=50", true, cgroup.IOLimit{Device: vda, ReadBPS: 2 << 20, WriteBPS: 1 << 20, WriteIOPS: 50}, true},
		{"already ours", "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max", true, cgroup.IOLimit{}, false},
		{"stricter everywhere", "254:0 rbps=1 wbps=1", true, cgroup.IOLimit{}, false},
		{"another disk", "8:0 wbps=1", true, cgroup.IOLimit{}, false},
		{"malformed", "254:0 wbps", true, cgroup.IOLimit{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, change := TightenIOMax(tt.have, tt.set, want)
			if change != tt.change || (change && got != tt.want) {
				t.Errorf("TightenIOMax(%q) = %+v, %v; want %+v, %v", tt.have, got, change, tt.want, tt.change)
			}
		})
	}
}
