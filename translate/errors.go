package translate

import "errors"

var (
	// ErrInvalidCgroupsPath reports a cgroupsPath that is neither an
	// absolute cgroupfs path nor systemd "slice:prefix:name".
	ErrInvalidCgroupsPath = errors.New("translate: invalid cgroupsPath")
	// ErrInvalidCgroupParent reports a pod cgroup parent that is neither a
	// cgroupfs path nor a systemd slice name.
	ErrInvalidCgroupParent = errors.New("translate: invalid cgroup parent")
)
