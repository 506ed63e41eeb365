package criservice

import (
	"errors"

	"github.com/criguard/criguard/criservice/resolve"
)

var (
	// ErrNoCgroupsPath means no resolver could find the container's cgroup.
	ErrNoCgroupsPath = resolve.ErrNoCgroupsPath
	// ErrUnknownContainer means the runtime does not know the container (it may have vanished).
	ErrUnknownContainer = resolve.ErrUnknownContainer
	// ErrTornDown means the container or pod stopped, and its cgroup went, while
	// criguard was applying its throttle: a race with teardown, not a failure.
	ErrTornDown = errors.New("criservice: stopped and its cgroup removed while the throttle was applied")
	// ErrNoPodCgroup means a pod-scope limit was asked for a pod whose cgroup_parent is unknown.
	ErrNoPodCgroup = resolve.ErrNoPodCgroup
	// ErrDeviceUnresolved means a policy device could not be resolved on this host;
	// the class's other devices are applied all the same.
	ErrDeviceUnresolved = errors.New("criservice: policy device not found on this host")
)
