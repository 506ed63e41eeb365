package resolve

import "errors"

var (
	// ErrNoCgroupsPath means no resolver could find the container's cgroup.
	ErrNoCgroupsPath = errors.New("criservice: container cgroup not found")
	// ErrUnknownContainer means the runtime does not know the container (it may have vanished).
	ErrUnknownContainer = errors.New("criservice: container not found in the runtime")
	// ErrNoPodCgroup means no resolver could find a pod's cgroup_parent.
	ErrNoPodCgroup = errors.New("criservice: pod cgroup_parent unknown")
)

// ErrNoRootfs means no resolver could find the container's writable layer.
var ErrNoRootfs = errors.New("criservice: container writable layer not found")
