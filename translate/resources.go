package translate

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

const (
	// DefaultCFSPeriod is the CFS period runtimes use when none is given (100 ms).
	DefaultCFSPeriod = 100000
	// minCFSQuota is the smallest quota the kernel accepts (1 ms).
	minCFSQuota = 1000
)

// Unified keys criguard may put in a CRI request on cgroup v2.
const (
	UnifiedPidsMax    = "pids.max"
	UnifiedMemoryHigh = "memory.high"
	UnifiedCPUWeight  = "cpu.weight"
	// UnifiedCPUMax and UnifiedMemoryMax are read, never added: they mirror
	// cpu_quota/cpu_period and memory_limit_in_bytes, and runc writes unified last,
	// so a looser one there would undo the CRI field.
	UnifiedCPUMax    = "cpu.max"
	UnifiedMemoryMax = "memory.max"
)

// CFSQuota is the quota for a CPU limit of milli thousandths of a CPU over period µs,
// never below the kernel's minimum.
func CFSQuota(milli uint64, period int64) int64 {
	if period <= 0 {
		period = DefaultCFSPeriod
	}
	quota := (int64(milli)*period + 999) / 1000
	return max(quota, minCFSQuota)
}

// ContainerResources are the fields of a CRI LinuxContainerResources that the
// policy's pids, memory and cpu blocks bear on. 0 (or -1 for quota) is unset.
type ContainerResources struct {
	CPUShares, CPUQuota, CPUPeriod int64
	MemoryLimit                    int64
	Unified                        map[string]string
}

// Tightening is what TightenResources did, or could not do.
type Tightening struct {
	// Changed names each setting made stricter, e.g. "cpu_shares 1024→307".
	Changed []string
	// Unenforceable says what the host cannot do, e.g. memory.high on cgroup v1.
	Unenforceable []string
	// PidsMaxFile is the pids.max a v1 container's cgroup must hold: CRI has no pids
	// field, and v1 runtimes take no unified keys, so criguard writes the file.
	PidsMaxFile uint64
	// MemoryHigh is the ceiling in bytes the request now carries (v2), 0 when none.
	MemoryHigh uint64
}

// TightenResources makes every setting of res at least as strict as want, on a host
// whose cgroup version is cgroupVersion, and never loosens one: a value kubelet set
// that is stricter stays. It is idempotent: applied to its own output it changes
// nothing. On v2 the unified keys that mirror a CRI field (cpu.weight, cpu.max,
// pids.max, memory.high) are tightened with it, since runc writes unified after the
// fields; memory.max, when stricter than memory_limit_in_bytes, is the limit a
// memory.high share is taken of. io.max is TightenIOMax's.
func TightenResources(res *ContainerResources, want policy.Resources, cgroupVersion int) Tightening {
	var t Tightening
	v2 := cgroupVersion == 2
	setUnified := func(key string, value uint64) {
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		old, had := res.Unified[key]
		if have, ok := unifiedNumber(old); had && ok && have <= value {
			return
		}
		res.Unified[key] = strconv.FormatUint(value, 10)
		t.Changed = append(t.Changed, fmt.Sprintf("unified[%s] %s→%d", key, orUnset(old, had), value))
	}

	if want.CPUWeight != 0 {
		shares := int64(cgroup.CPUSharesFromWeight(want.CPUWeight))
		if res.CPUShares <= 0 || res.CPUShares > shares {
			t.Changed = append(t.Changed, fmt.Sprintf("cpu_shares %s→%d", orUnsetInt(res.CPUShares), shares))
			res.CPUShares = shares
			if v2 {
				// Exactly the weight asked, whichever conversion the runtime makes.
				setUnified(UnifiedCPUWeight, want.CPUWeight)
			}
		} else if old, had := res.Unified[UnifiedCPUWeight]; v2 && had {
			if have, ok := unifiedNumber(old); !ok || have > want.CPUWeight {
				setUnified(UnifiedCPUWeight, want.CPUWeight)
			}
		}
	}
	if want.CPUMaxMilli != 0 {
		period := res.CPUPeriod
		if period <= 0 {
			period = DefaultCFSPeriod
		}
		// quota/period ≤ milli/1000, in integers.
		if res.CPUQuota <= 0 || res.CPUQuota*1000 > int64(want.CPUMaxMilli)*period {
			quota := CFSQuota(want.CPUMaxMilli, period)
			t.Changed = append(t.Changed, fmt.Sprintf("cpu_quota %s→%d (period %d)", orUnsetInt(res.CPUQuota), quota, period))
			res.CPUQuota, res.CPUPeriod = quota, period
		}
		if old, had := res.Unified[UnifiedCPUMax]; v2 && had {
			if tightened, ok := tightenCPUMax(old, want.CPUMaxMilli, period); ok {
				res.Unified[UnifiedCPUMax] = tightened
				t.Changed = append(t.Changed, fmt.Sprintf("unified[%s] %s→%s", UnifiedCPUMax, old, tightened))
			}
		}
	}
	if want.PidsMax != 0 {
		if v2 {
			setUnified(UnifiedPidsMax, want.PidsMax)
		} else {
			t.PidsMaxFile = want.PidsMax
		}
	}
	if want.MemoryHighSet() {
		limit := res.MemoryLimit
		if unifiedLimit, ok := unifiedNumber(res.Unified[UnifiedMemoryMax]); v2 && ok && unifiedLimit > 0 &&
			unifiedLimit <= math.MaxInt64 && (limit <= 0 || int64(unifiedLimit) < limit) {
			limit = int64(unifiedLimit) // the limit the kernel will hold: runc writes unified last
		}
		high := MemoryHigh(want, limit)
		switch {
		case !v2:
			t.Unenforceable = append(t.Unenforceable, "memory.high: cgroup v1 has no soft memory ceiling (memory.high is v2 only)")
		case high == 0:
			t.Unenforceable = append(t.Unenforceable, fmt.Sprintf("memory.high: %d%% of the memory limit, and the container has none", want.MemoryHighPercent))
		default:
			setUnified(UnifiedMemoryHigh, high)
			t.MemoryHigh, _ = unifiedNumber(res.Unified[UnifiedMemoryHigh])
		}
	}
	return t
}

// tightenCPUMax returns the cpu.max value ("QUOTA PERIOD") no looser than milli
// thousandths of a CPU, in have's period (or period, the CRI one, when have gives
// none), and false when have is already as strict. A value that does not parse is
// replaced: runc would fail to write it anyway.
func tightenCPUMax(have string, milli uint64, period int64) (string, bool) {
	fields := strings.Fields(have)
	if len(fields) == 2 {
		if p, err := strconv.ParseInt(fields[1], 10, 64); err == nil && p > 0 {
			period = p
		} else {
			fields = nil
		}
	}
	quota := CFSQuota(milli, period)
	if len(fields) == 1 || len(fields) == 2 {
		if q, err := strconv.ParseInt(fields[0], 10, 64); err == nil && q > 0 && q <= quota {
			return have, false
		}
	}
	return fmt.Sprintf("%d %d", quota, period), true
}

// MemoryHigh is the ceiling in bytes for a container whose memory limit is limit
// (0 or less: none): the lower of the policy's bytes and its share of the limit.
func MemoryHigh(want policy.Resources, limit int64) uint64 {
	high := want.MemoryHigh
	if want.MemoryHighPercent != 0 && limit > 0 {
		high = tightest(high, uint64(limit)/100*want.MemoryHighPercent+uint64(limit)%100*want.MemoryHighPercent/100)
	}
	return high
}

// unifiedNumber reads a unified value; "max" is unlimited, reported as not a number.
func unifiedNumber(s string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

func orUnset(s string, had bool) string {
	if !had {
		return "unset"
	}
	return s
}

func orUnsetInt(n int64) string {
	if n <= 0 {
		return "unset"
	}
	return strconv.FormatInt(n, 10)
}
