package main

import (
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

// ioVersionChecker is what `check --host` asks of the host about protection; a
// hostChecker that is not one skips the protection check.
type ioVersionChecker interface {
	// IOVersion is the cgroup version of the I/O controller criguard writes to.
	IOVersion() (int, error)
}

func (h realHost) IOVersion() (int, error) {
	hierarchy, err := cgroup.DetectHost(h.resolver.ProcRoot)
	if err != nil {
		return 0, err
	}
	backend, err := hierarchy.IO()
	if err != nil {
		return 0, err
	}
	return backend.Version(), nil
}

// checkProtectionOnHost refuses protect and yield on a cgroup v1 host: protection is
// driven by the protected workload's io.pressure, which only cgroup v2 has (v1
// blkio keeps no pressure stall information), so there it would never act.
func checkProtectionOnHost(path string, p *policy.Policy, host hostChecker, stderr io.Writer) bool {
	vc, ok := host.(ioVersionChecker)
	if !ok {
		return true
	}
	var sharing []string
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		for _, l := range p.Classes[name].IO {
			switch {
			case !l.Protect.IsZero():
				sharing = append(sharing, fmt.Sprintf("class %q protects on %s", name, l.Target()))
			case !l.Yield.IsZero():
				sharing = append(sharing, fmt.Sprintf("class %q yields on %s", name, l.Target()))
			}
		}
	}
	if len(sharing) == 0 {
		return true
	}
	version, err := vc.IOVersion()
	if err != nil {
		return true // reported as "cannot throttle I/O"
	}
	if version == 2 {
		return true
	}
	for _, s := range sharing {
		fmt.Fprintf(stderr, "%s: %s: refused on this host: protection follows the protected workload's io.pressure, which only cgroup v2 has, and this host's I/O controller is cgroup v%d blkio (no pressure stall information); remove protect and yield from policies for this node, or run it on cgroup v2\n", path, s, version)
	}
	return false
}
