package main

import (
	"fmt"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
)

// formatMountDisk renders one volume or writable layer for explain:
//
//	/data ← /var/lib/kubelet/pods/…/data (volume "data", kubernetes.io~empty-dir, by volumes ["data"]) → loop7 (…) → 7:7; limit 7:7 rbps=- wbps=1MiB …
func formatMountDisk(m criservice.MountDisk, limits []cgroup.IOLimit) string {
	var what []string
	if m.Volume != "" {
		what = append(what, fmt.Sprintf("volume %q", m.Volume))
	}
	if m.Plugin != "" {
		what = append(what, m.Plugin)
	}
	what = append(what, "by "+m.Selector)
	where := m.HostPath
	if m.ContainerPath != "" {
		where = m.ContainerPath + " ← " + m.HostPath
	}
	if where == "" {
		where = "-"
	}
	head := fmt.Sprintf("%s (%s)", where, strings.Join(what, ", "))
	switch {
	case m.Error != "":
		return head + ": not resolved, retried: " + m.Error
	case m.Skipped != "":
		return head + ": skipped, no block device: " + m.Skipped
	}
	limit := "none"
	for _, l := range limits {
		if l.Device.String() == m.Device {
			limit = formatLimit(l)
		}
	}
	// The chain starts at the host path, already shown.
	links := strings.TrimPrefix(m.Chain, m.HostPath)
	return fmt.Sprintf("%s%s; limit %s", head, links, limit)
}
