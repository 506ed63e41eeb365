package cgroup

import "errors"

var (
	// ErrMountInfo reports a /proc/PID/mountinfo line that cannot be parsed.
	ErrMountInfo = errors.New("cgroup: malformed mountinfo")
	// ErrProcCgroup reports a /proc/PID/cgroup line that cannot be parsed.
	ErrProcCgroup = errors.New("cgroup: malformed /proc/PID/cgroup")
	// ErrMalformed reports a cgroup file (io.max, io.stat, blkio.*) whose
	// content is not what the kernel writes.
	ErrMalformed = errors.New("cgroup: malformed cgroup file")
	// ErrNoIOController reports a host with neither v1 blkio nor cgroup2 mounted.
	ErrNoIOController = errors.New("cgroup: neither v1 blkio nor cgroup2 is mounted")
	// ErrIONotEnabled reports a v2 cgroup whose parent does not delegate "io".
	ErrIONotEnabled = errors.New("cgroup: io controller not enabled in the parent's cgroup.subtree_control")
	// ErrInvalidDevice reports a device spec that is neither MAJ:MIN nor an absolute path.
	ErrInvalidDevice = errors.New("cgroup: invalid device")
	// ErrUnknownDevice reports a MAJ:MIN the kernel does not list in /sys/dev/block.
	ErrUnknownDevice = errors.New("cgroup: unknown block device")
	// ErrNoBlockDevice reports a path on a filesystem backed by no block
	// device (overlay, tmpfs, proc, ...).
	ErrNoBlockDevice = errors.New("cgroup: path is on a filesystem without a block device")
	// ErrFilesystemHung reports a path whose filesystem did not answer a stat in
	// time (a hard-mounted NFS whose server is gone, a FUSE daemon that hangs).
	ErrFilesystemHung = errors.New("cgroup: filesystem did not answer")
	// ErrPathEscape reports a cgroup path that would leave its mount.
	ErrPathEscape = errors.New("cgroup: path escapes its mount")
	// ErrControllerMissing means a cgroup controller a setting needs is not there.
	ErrControllerMissing = errors.New("cgroup: controller missing")
	// ErrNotSupported is a setting this host's cgroup version does not have.
	ErrNotSupported = errors.New("cgroup: not supported on this host")
	// ErrInvalidFile reports a cgroup file name that is not a plain name.
	ErrInvalidFile = errors.New("cgroup: invalid cgroup file name")
)
