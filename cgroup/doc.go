// Package cgroup is part of criguard; see ../README.md.
package cgroup
