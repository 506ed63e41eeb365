package translate

import (
	"maps"
	"testing"

	"github.com/criguard/criguard/policy"
)

func TestTightenResources(t *testing.T) {
	tests := []struct {
		name    string
		version int
		in      ContainerResources
		want    policy.Resources
		out     ContainerResources
		pids    uint64
		unenf   int
	}{
		{"cpu weight lowers kubelet's shares, v1", 1,
			ContainerResources{CPUShares: 1024}, policy.Resources{CPUWeight: 50},
			ContainerResources{CPUShares: 421}, 0, 0},
		{"cpu weight lowers kubelet's shares and sets cpu.weight exactly, v2", 2,
			ContainerResources{CPUShares: 1024}, policy.Resources{CPUWeight: 50},
			ContainerResources{CPUShares: 421, Unified: map[string]string{"cpu.weight": "50"}}, 0, 0},
		{"kubelet's tighter shares stay", 2,
			ContainerResources{CPUShares: 2}, policy.Resources{CPUWeight: 50},
			ContainerResources{CPUShares: 2}, 0, 0},
		{"unset shares are set", 1,
			ContainerResources{}, policy.Resources{CPUWeight: 100},
			ContainerResources{CPUShares: 1024}, 0, 0},
		{"a looser cpu.weight in unified is tightened", 2,
			ContainerResources{CPUShares: 2, Unified: map[string]string{"cpu.weight": "500"}}, policy.Resources{CPUWeight: 50},
			ContainerResources{CPUShares: 2, Unified: map[string]string{"cpu.weight": "50"}}, 0, 0},
		{"cpu max sets a quota where there is none", 1,
			ContainerResources{CPUQuota: -1}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000}, 0, 0},
		{"cpu max lowers a looser quota in kubelet's period", 2,
			ContainerResources{CPUQuota: 400000, CPUPeriod: 200000}, policy.Resources{CPUMaxMilli: 1500},
			ContainerResources{CPUQuota: 300000, CPUPeriod: 200000}, 0, 0},
		{"kubelet's tighter quota stays", 1,
			ContainerResources{CPUQuota: 20000, CPUPeriod: 100000}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 20000, CPUPeriod: 100000}, 0, 0},
		{"pids on v2 travel in unified", 2,
			ContainerResources{}, policy.Resources{PidsMax: 20},
			ContainerResources{Unified: map[string]string{"pids.max": "20"}}, 0, 0},
		{"a looser pids.max (max) is tightened", 2,
			ContainerResources{Unified: map[string]string{"pids.max": "max"}}, policy.Resources{PidsMax: 20},
			ContainerResources{Unified: map[string]string{"pids.max": "20"}}, 0, 0},
		{"a tighter pids.max stays", 2,
			ContainerResources{Unified: map[string]string{"pids.max": "10"}}, policy.Resources{PidsMax: 20},
			ContainerResources{Unified: map[string]string{"pids.max": "10"}}, 0, 0},
		{"pids on v1 are a file write, the request is untouched", 1,
			ContainerResources{CPUShares: 2}, policy.Resources{PidsMax: 20},
			ContainerResources{CPUShares: 2}, 20, 0},
		{"memory.high as a share of kubelet's limit", 2,
			ContainerResources{MemoryLimit: 1 << 30}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "966367641"}}, 0, 0},
		{"memory.high: the lower of bytes and share", 2,
			ContainerResources{MemoryLimit: 1 << 30}, policy.Resources{MemoryHighPercent: 90, MemoryHigh: 256 << 20},
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "268435456"}}, 0, 0},
		{"kubelet's tighter memory.high (MemoryQoS) stays", 2,
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "104857600"}}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "104857600"}}, 0, 0},
		{"memory.high as a share without a limit is reported", 2,
			ContainerResources{}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{}, 0, 1},
		{"memory.high on v1 is reported, never written", 1,
			ContainerResources{MemoryLimit: 1 << 30}, policy.Resources{MemoryHigh: 1 << 20},
			ContainerResources{MemoryLimit: 1 << 30}, 0, 1},
		// Unified keys that mirror a CRI field: runc writes unified last, so a looser
		// one there would undo the tightened field.
		{"a looser unified cpu.max (max) is tightened with the quota", 2,
			ContainerResources{CPUQuota: 400000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "max 100000"}}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "50000 100000"}}, 0, 0},
		{"a looser unified cpu.max keeps its own period", 2,
			ContainerResources{CPUQuota: 20000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "800000 200000"}}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 20000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "100000 200000"}}, 0, 0},
		{"a unified cpu.max without a period takes the CRI one", 2,
			ContainerResources{CPUQuota: -1, Unified: map[string]string{"cpu.max": "max"}}, policy.Resources{CPUMaxMilli: 1500},
			ContainerResources{CPUQuota: 150000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "150000 100000"}}, 0, 0},
		{"a tighter unified cpu.max stays", 2,
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "10000 100000"}}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "10000 100000"}}, 0, 0},
		{"a unified cpu.max that does not parse is replaced", 2,
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "lots"}}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "50000 100000"}}, 0, 0},
		{"unified is the runtime's business on v1", 1,
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "max"}}, policy.Resources{CPUMaxMilli: 500},
			ContainerResources{CPUQuota: 50000, CPUPeriod: 100000, Unified: map[string]string{"cpu.max": "max"}}, 0, 0},
		{"a looser unified cpu.weight is tightened even when the shares were", 2,
			ContainerResources{CPUShares: 1024, Unified: map[string]string{"cpu.weight": "10000"}}, policy.Resources{CPUWeight: 50},
			ContainerResources{CPUShares: 421, Unified: map[string]string{"cpu.weight": "50"}}, 0, 0},
		{"a stricter unified memory.max is the limit memory.high is a share of", 2,
			ContainerResources{MemoryLimit: 2 << 30, Unified: map[string]string{"memory.max": "1073741824"}}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{MemoryLimit: 2 << 30, Unified: map[string]string{"memory.max": "1073741824", "memory.high": "966367641"}}, 0, 0},
		{"a unified memory.max without a CRI limit is the limit", 2,
			ContainerResources{Unified: map[string]string{"memory.max": "1073741824"}}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{Unified: map[string]string{"memory.max": "1073741824", "memory.high": "966367641"}}, 0, 0},
		{"a looser unified memory.max does not raise memory.high", 2,
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.max": "max"}}, policy.Resources{MemoryHighPercent: 90},
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.max": "max", "memory.high": "966367641"}}, 0, 0},
		{"a looser unified memory.high is tightened", 2,
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "max"}}, policy.Resources{MemoryHigh: 256 << 20},
			ContainerResources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.high": "268435456"}}, 0, 0},
		{"the limit itself is never touched", 2,
			ContainerResources{MemoryLimit: 100}, policy.Resources{MemoryHigh: 1 << 30},
			ContainerResources{MemoryLimit: 100, Unified: map[string]string{"memory.high": "1073741824"}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.in
			res.Unified = maps.Clone(tt.in.Unified)
			got := TightenResources(&res, tt.want, tt.version)
			if !equalResources(res, tt.out) {
				t.Fatalf("resources %+v, want %+v", res, tt.out)
			}
			if got.PidsMaxFile != tt.pids || len(got.Unenforceable) != tt.unenf {
				t.Fatalf("tightening %+v, want pids file %d and %d unenforceable", got, tt.pids, tt.unenf)
			}
			// Idempotent: a second pass (kubelet's next update carrying our values) changes nothing.
			again := res
			again.Unified = maps.Clone(res.Unified)
			if second := TightenResources(&again, tt.want, tt.version); len(second.Changed) != 0 || !equalResources(again, res) {
				t.Fatalf("second pass changed %v: %+v", second.Changed, again)
			}
		})
	}
}

func equalResources(a, b ContainerResources) bool {
	return a.CPUShares == b.CPUShares && a.CPUQuota == b.CPUQuota && a.CPUPeriod == b.CPUPeriod &&
		a.MemoryLimit == b.MemoryLimit && maps.Equal(a.Unified, b.Unified)
}

func TestCFSQuota(t *testing.T) {
	for _, tt := range []struct {
		milli  uint64
		period int64
		want   int64
	}{{500, 100000, 50000}, {1, 100000, 1000}, {1500, 0, 150000}, {333, 100000, 33300}, {1, 1000, 1000}} {
		if got := CFSQuota(tt.milli, tt.period); got != tt.want {
			t.Errorf("CFSQuota(%d, %d) = %d, want %d", tt.milli, tt.period, got, tt.want)
		}
	}
}
