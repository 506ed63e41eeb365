package cgroup

import (
	"strconv"
	"strings"
)

// ControllerMounts says where each v1 controller is mounted (Hierarchy does).
type ControllerMounts interface {
	ControllerMount(controller string) (string, bool)
}

// Usage is what a cgroup has used, as CRI's pod stats carry it. A figure that
// could not be read is nil: left out, as runtimes do.
type Usage struct {
	CPUNanos   *uint64
	Memory     *MemoryUsage
	Processes  *uint64
	IOPressure *Pressure // v2 only
}

// MemoryUsage is kubelet's view of memory: the working set is usage less
// inactive file pages.
type MemoryUsage struct {
	Usage, WorkingSet, RSS uint64
}

// ReadUsage reads a cgroup's CPU, memory, process and I/O pressure figures. dirOf
// gives the cgroup's directory under a controller's mount, "" when it has none
// there; on v1 each controller has its own mount.
func ReadUsage(backend IO, controllers ControllerMounts, dirOf func(mount string) string) Usage {
	var u Usage
	if backend.Version() == 2 {
		dir := dirOf(backend.Mount())
		if dir == "" {
			return u
		}
		if usec, ok := keyedValue(dir, "cpu.stat", "usage_usec"); ok {
			u.CPUNanos = ptr(usec * 1000)
		}
		u.Memory = memoryUsage(dir, "memory.current", "inactive_file", "anon")
		u.Processes = fileValue(dir, "pids.current")
		if p, err := (ioV2{}).Pressure(dir); err == nil {
			u.IOPressure = &p
		}
		return u
	}
	v1Dir := func(controller string) string {
		if controllers == nil {
			return ""
		}
		mount, ok := controllers.ControllerMount(controller)
		if !ok {
			return ""
		}
		return dirOf(mount)
	}
	if dir := v1Dir("cpuacct"); dir != "" {
		u.CPUNanos = fileValue(dir, "cpuacct.usage")
	}
	if dir := v1Dir("memory"); dir != "" {
		u.Memory = memoryUsage(dir, "memory.usage_in_bytes", "total_inactive_file", "total_rss")
	}
	if dir := v1Dir("pids"); dir != "" {
		u.Processes = fileValue(dir, "pids.current")
	}
	return u
}

func memoryUsage(dir, usageFile, inactiveKey, rssKey string) *MemoryUsage {
	usage := fileValue(dir, usageFile)
	if usage == nil {
		return nil
	}
	inactive, _ := keyedValue(dir, "memory.stat", inactiveKey)
	rss, _ := keyedValue(dir, "memory.stat", rssKey)
	return &MemoryUsage{Usage: *usage, WorkingSet: *usage - min(inactive, *usage), RSS: rss}
}

// LimitValue reads the content of a cgroup file holding one number; "max"
// (unlimited) is not ok.
func LimitValue(content string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(content), 10, 64)
	return n, err == nil
}

// fileValue reads a cgroup file holding one number; nil for "max" or no file.
func fileValue(dir, file string) *uint64 {
	content, err := ReadFile(dir, file)
	if err != nil {
		return nil
	}
	n, ok := LimitValue(content)
	if !ok {
		return nil
	}
	return &n
}

// keyedValue reads one "key value" line of a flat-keyed file (memory.stat, cpu.stat).
func keyedValue(dir, file, key string) (uint64, bool) {
	content, err := ReadFile(dir, file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func ptr[T any](v T) *T { return &v }
