// Package translate holds criguard's pure functions: a runtime's
// cgroupsPath (cgroupfs or systemd "slice:prefix:name") to the cgroup
// directory under a mount, pod cgroup parents to directories and QoS
// classes, Docker's cgroup naming, typed limits to the exact cgroup
// writes for the host's backend, and a class's pids, memory and cpu
// throttles to a container's CRI resources (cpu.shares ↔ cpu.weight as runc
// converts them). Nothing here touches the filesystem.
package translate
