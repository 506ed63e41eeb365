package cgroup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Device is a block device number.
type Device struct{ Major, Minor uint32 }

// String returns "MAJ:MIN", the form every cgroup file uses.
func (d Device) String() string {
	return strconv.FormatUint(uint64(d.Major), 10) + ":" + strconv.FormatUint(uint64(d.Minor), 10)
}

// Compare orders devices by major, then minor, so output is stable
// (slices.SortFunc(devices, Device.Compare)).
func (d Device) Compare(other Device) int {
	return cmp.Or(cmp.Compare(d.Major, other.Major), cmp.Compare(d.Minor, other.Minor))
}

// ParseDevice parses "MAJ:MIN".
func ParseDevice(s string) (Device, error) {
	majorText, minorText, ok := strings.Cut(s, ":")
	if !ok {
		return Device{}, fmt.Errorf("%w %q: want MAJ:MIN", ErrInvalidDevice, s)
	}
	major, err := strconv.ParseUint(majorText, 10, 32)
	if err != nil {
		return Device{}, fmt.Errorf("%w %q: major: %w", ErrInvalidDevice, s, err)
	}
	minor, err := strconv.ParseUint(minorText, 10, 32)
	if err != nil {
		return Device{}, fmt.Errorf("%w %q: minor: %w", ErrInvalidDevice, s, err)
	}
	return Device{Major: uint32(major), Minor: uint32(minor)}, nil
}

func deviceFromDev(dev uint64) Device {
	return Device{Major: unix.Major(dev), Minor: unix.Minor(dev)}
}

// DeviceResolver turns "MAJ:MIN", a block-device path, or any path on a
// filesystem into the whole disk (partition → parent via /sys/dev/block;
// device-mapper stays itself). Empty roots mean the real /proc, /sys, /dev.
type DeviceResolver struct{ ProcRoot, SysRoot, DevRoot string }

// Resolve returns the whole disk behind spec.
func (r DeviceResolver) Resolve(spec string) (Device, error) {
	if d, err := ParseDevice(spec); err == nil {
		return r.wholeDisk(d)
	}
	if !filepath.IsAbs(spec) {
		return Device{}, fmt.Errorf("%w %q: want MAJ:MIN or an absolute path", ErrInvalidDevice, spec)
	}
	st, _, err := r.statPath(context.Background(), spec)
	if err != nil {
		return Device{}, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return r.wholeDisk(deviceFromDev(st.Rdev))
	}
	d := deviceFromDev(st.Dev)
	if d.Major == 0 {
		// Anonymous device (tmpfs, overlay, btrfs subvolume, ...): only the
		// mount's source can name a real disk.
		var err error
		if d, err = r.mountSourceDevice(spec, d); err != nil {
			return Device{}, err
		}
	}
	return r.wholeDisk(d)
}

// mountSourceDevice finds the mount whose st_dev is anon and returns the
// block device named by its source, or ErrNoBlockDevice naming the filesystem.
func (r DeviceResolver) mountSourceDevice(path string, anon Device) (Device, error) {
	m, err := r.mountOf(path, anon)
	if err != nil {
		return Device{}, err
	}
	if d, ok := r.sourceBlockDevice(m); ok {
		return d, nil
	}
	return Device{}, fmt.Errorf("%w: %s is on %s (source %q, device %s)", ErrNoBlockDevice, path, m.fsType, m.source, anon)
}

// mountOf is the mount whose files have st_dev anon.
func (r DeviceResolver) mountOf(path string, anon Device) (mountEntry, error) {
	return r.mountOfIn(nil, path, anon)
}

// mountOfIn is mountOf among mounts already read; nil reads them.
func (r DeviceResolver) mountOfIn(mounts []mountEntry, path string, anon Device) (mountEntry, error) {
	if mounts == nil {
		var err error
		if mounts, err = r.readMounts(path); err != nil {
			return mountEntry{}, err
		}
	}
	for _, m := range mounts {
		if m.device == anon {
			return m, nil
		}
	}
	return mountEntry{}, fmt.Errorf("%w: %s is on device %s, which %s does not list", ErrNoBlockDevice, path, anon, r.mountInfoPath())
}

func (r DeviceResolver) mountInfoPath() string {
	return filepath.Join(orDefault(r.ProcRoot, "/proc"), "self", "mountinfo")
}

// readMounts reads the mount table to resolve path (the last parse while the
// table stands still: mountTable). The result is shared: read only.
func (r DeviceResolver) readMounts(path string) ([]mountEntry, error) {
	mounts, err := mountTableOf(r.mountInfoPath()).read()
	if err != nil {
		return nil, fmt.Errorf("cgroup: resolve device of %s: %w", path, err)
	}
	return mounts, nil
}

// sourceBlockDevice is the block device a mount's source names, if it is one.
func (r DeviceResolver) sourceBlockDevice(m mountEntry) (Device, bool) {
	devRel, ok := strings.CutPrefix(m.source, "/dev/")
	if !ok {
		return Device{}, false
	}
	var st unix.Stat_t
	sourcePath := filepath.Join(orDefault(r.DevRoot, "/dev"), devRel)
	if unix.Stat(sourcePath, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return deviceFromDev(st.Rdev), true
	}
	return Device{}, false
}

// wholeDisk maps a partition to its disk through /sys/dev/block; any other
// block device (a disk, dm-*, md*, loop*) is returned unchanged.
func (r DeviceResolver) wholeDisk(d Device) (Device, error) {
	link := filepath.Join(orDefault(r.SysRoot, "/sys"), "dev", "block", d.String())
	devDir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return Device{}, fmt.Errorf("%w %s: %w", ErrUnknownDevice, d, err)
	}
	if _, err := os.Stat(filepath.Join(devDir, "partition")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return d, nil
		}
		return Device{}, fmt.Errorf("cgroup: resolve whole disk of %s: %w", d, err)
	}
	parentDevFile := filepath.Join(filepath.Dir(devDir), "dev")
	content, err := os.ReadFile(parentDevFile)
	if err != nil {
		return Device{}, fmt.Errorf("cgroup: parent of partition %s: %w", d, err)
	}
	parent, err := ParseDevice(strings.TrimSpace(string(content)))
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", parentDevFile, err)
	}
	return parent, nil
}
