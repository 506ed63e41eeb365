package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BlockVolume is a filesystem on a block device of its own, mounted at a host path
// as kubelet mounts a volume.
type BlockVolume struct {
	// Device is the block device node: /dev/loop7, /dev/mapper/criguard-e2e-….
	Device string
	// Dev is its "MAJ:MIN", where blk-throttle takes a limit for it.
	Dev string
	// MountPoint is the host path it is mounted at.
	MountPoint string
}

// KubeletVolumePath is where kubelet mounts a pod's volume:
// <root>/pods/<uid>/volumes/<plugin>/<name>, with /mount after a CSI volume's name.
func KubeletVolumePath(root, podUID, plugin, name string) string {
	p := filepath.Join(root, "pods", podUID, "volumes", plugin, name)
	if plugin == "kubernetes.io~csi" {
		p = filepath.Join(p, "mount")
	}
	return p
}

// LoopVolume makes an ext4 filesystem on a fresh loop device over a sparse file of
// the root disk and mounts it at mountPoint. Cleanup unmounts it and frees the loop.
func LoopVolume(t testing.TB, mountPoint string, sizeMiB int) BlockVolume {
	t.Helper()
	loop := newLoop(t, sizeMiB)
	return mountExt4(t, loop, mountPoint)
}

// ErrNoDeviceMapper says the kernel has no device-mapper (no /dev/mapper/control).
var ErrNoDeviceMapper = errors.New("lab: this kernel has no device-mapper")

// LinearVolume makes a dm-linear device over a fresh loop device, as LVM makes a
// logical volume, with ext4 on it mounted at mountPoint. It returns
// ErrNoDeviceMapper when the kernel lacks device-mapper.
func LinearVolume(t testing.TB, mountPoint string, sizeMiB int) (BlockVolume, error) {
	t.Helper()
	// The node may exist while the kernel has no driver behind it (ENODEV on open).
	control, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return BlockVolume{}, fmt.Errorf("%w: %v", ErrNoDeviceMapper, err)
	}
	control.Close()
	dmsetup := LookPath(t, "dmsetup")
	loop := newLoop(t, sizeMiB)
	name := "criguard-e2e-" + randomID(4)
	table := fmt.Sprintf("0 %d linear %s 0", sizeMiB*2048, loop.Device)
	if _, err := run(context.Background(), dmsetup, "create", name, "--table", table); err != nil {
		return BlockVolume{}, err
	}
	t.Cleanup(func() {
		if _, err := retry(func() (string, error) { return run(context.Background(), dmsetup, "remove", name) }); err != nil {
			t.Errorf("lab: %v", err)
		}
	})
	dm := BlockVolume{Device: "/dev/mapper/" + name, Dev: devOf(t, "/dev/mapper/"+name)}
	return mountExt4(t, dm, mountPoint), nil
}

func newLoop(t testing.TB, sizeMiB int) BlockVolume {
	t.Helper()
	if err := os.MkdirAll(dataBase, 0o711); err != nil {
		t.Fatalf("lab: %v", err)
	}
	image := filepath.Join(dataBase, "criguard-e2e-loop-"+randomID(4)+".img")
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() { os.Remove(image) })
	if err := os.Truncate(image, int64(sizeMiB)<<20); err != nil {
		t.Fatalf("lab: %v", err)
	}
	device := strings.TrimSpace(mustRun(t, LookPath(t, "losetup"), "--find", "--show", image))
	t.Cleanup(func() {
		if _, err := retry(func() (string, error) { return run(context.Background(), "losetup", "-d", device) }); err != nil {
			t.Errorf("lab: %v", err)
		}
	})
	return BlockVolume{Device: device, Dev: devOf(t, device)}
}

func mountExt4(t testing.TB, v BlockVolume, mountPoint string) BlockVolume {
	t.Helper()
	mustRun(t, LookPath(t, "mkfs.ext4"), "-q", "-F", v.Device)
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		t.Fatalf("lab: %v", err)
	}
	mustRun(t, "mount", v.Device, mountPoint)
	t.Cleanup(func() {
		if _, err := retry(func() (string, error) { return run(context.Background(), "umount", mountPoint) }); err != nil {
			t.Errorf("lab: %v", err)
		}
	})
	if err := os.Chmod(mountPoint, 0o777); err != nil {
		t.Fatalf("lab: %v", err)
	}
	v.MountPoint = mountPoint
	return v
}

// devOf is "MAJ:MIN" of a block device node, from sysfs.
func devOf(t testing.TB, node string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(node)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(real), "dev"))
	if err != nil {
		t.Fatalf("lab: MAJ:MIN of %s: %v", node, err)
	}
	return strings.TrimSpace(string(b))
}

// retry runs f a few times: a mount or device just released by a container may be
// busy for a moment.
func retry(f func() (string, error)) (string, error) {
	var out string
	var err error
	for range 10 {
		if out, err = f(); err == nil {
			return out, nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return out, err
}
