// Package cgroup finds where cgroup controllers are mounted (v1, v2 or hybrid,
// at any mount point), resolves block devices to whole disks, and reads and
// writes the disk-I/O throttle files of a cgroup directory.
//
// The host's mode is decided once, from /proc/self/mountinfo, by
// [DetectHost] or [ParseMountInfo]; [Hierarchy.IO] then returns the backend
// for that host: v1 blkio (blkio.go) when blkio is a v1 controller, v2 io
// (io.go) otherwise. Both turn typed [IOLimit] values into the exact
// [Write]s the kernel expects, in one place each.
//
// What the kernel enforces differs: v1 blkio throttles only direct I/O
// (buffered writes reach the page cache and are flushed by the kernel outside
// the cgroup), while v2 io.max throttles buffered writeback too.
//
// The package imports nothing from the rest of criguard and every root
// (/proc, /sys, /dev, the cgroup mounts) can be replaced, so tests run in a
// temporary directory.
package cgroup
