package cgroup

import (
	"maps"
	"slices"
)

// IOLimit is one device's throttle. Zero means "no limit" for that key.
type IOLimit struct {
	Device                                 Device
	ReadBPS, WriteBPS, ReadIOPS, WriteIOPS uint64
}

// IsZero reports whether the limit sets no key at all.
func (l IOLimit) IsZero() bool {
	return l.ReadBPS == 0 && l.WriteBPS == 0 && l.ReadIOPS == 0 && l.WriteIOPS == 0
}

// IOStat is one device's usage since the cgroup was created.
type IOStat struct {
	Device                                   Device
	ReadBytes, WriteBytes, ReadIOs, WriteIOs uint64
}

// Write is one cgroup file write: File is relative to the cgroup dir (e.g. "io.max").
type Write struct{ File, Value string }

// IO is implemented by the v1 (blkio.go) and v2 (io.go) backends.
type IO interface {
	// Version is 1 or 2.
	Version() int
	// Mount is the mount the cgroup dirs live under.
	Mount() string
	// Hierarchical reports whether a limit on a cgroup binds its descendants
	// together (v2 io.max); v1 blk-throttle binds only the cgroup's own tasks.
	Hierarchical() bool
	// Writes returns the exact writes that make these limits true; zero
	// fields are written as "no limit", so a changed limit never keeps an old key.
	Writes(limits []IOLimit) []Write
	// ResetWrites returns the writes that clear every limit on these devices.
	ResetWrites(devices []Device) []Write
	// Limits reads back the limits in force in dir, sorted by device.
	Limits(dir string) ([]IOLimit, error)
	// Stats reads back the usage of dir, sorted by device.
	Stats(dir string) ([]IOStat, error)
	// Available reports whether dir can be throttled at all: on v2 the
	// parent must delegate "io" in cgroup.subtree_control; on v1 it is nil.
	Available(dir string) error
}

// sortedLimits drops devices without any limit and sorts the rest by device.
func sortedLimits(byDevice map[Device]*IOLimit) []IOLimit {
	devices := slices.SortedFunc(maps.Keys(byDevice), Device.Compare)
	limits := make([]IOLimit, 0, len(devices))
	for _, d := range devices {
		if l := byDevice[d]; !l.IsZero() {
			limits = append(limits, *l)
		}
	}
	return limits
}

func sortedStats(byDevice map[Device]*IOStat) []IOStat {
	devices := slices.SortedFunc(maps.Keys(byDevice), Device.Compare)
	stats := make([]IOStat, 0, len(devices))
	for _, d := range devices {
		stats = append(stats, *byDevice[d])
	}
	return stats
}

// ThrottlesBufferedWrites reports whether the backend's write limits also
// hold for buffered writes: v2 io.max does (writeback is charged to the
// cgroup), v1 blkio throttles direct I/O only.
func ThrottlesBufferedWrites(backend IO) bool {
	return backend.Version() == 2
}
