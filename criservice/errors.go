package criservice

import "errors"

var (
	// ErrNoCgroupsPath means no resolver could find the container's cgroup.
	ErrNoCgroupsPath = errors.New("criservice: container cgroup not found")
	// ErrUnknownContainer means the runtime does not know the container (it may have vanished).
	ErrUnknownContainer = errors.New("criservice: container not found in the runtime")
	// ErrNoPodCgroup means a pod-scope limit was asked for a pod whose cgroup_parent is unknown.
	ErrNoPodCgroup = errors.New("criservice: pod cgroup_parent unknown")
	// ErrDeviceUnresolved means a policy device could not be resolved on this host;
	// the class's other devices are applied all the same.
	ErrDeviceUnresolved = errors.New("criservice: policy device not found on this host")
)
