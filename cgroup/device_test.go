package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDevice(t *testing.T) {
	for s, want := range map[string]Device{"254:0": vda, "8:0": sda, "4294967295:1": {Major: 4294967295, Minor: 1}} {
		got, err := ParseDevice(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "254", "254:", ":0", "a:b", "-1:0", "254:0:1", "4294967296:0", " 8:0"} {
		if _, err := ParseDevice(bad); !errors.Is(err, ErrInvalidDevice) {
			t.Errorf("ParseDevice(%q) error = %v, want ErrInvalidDevice", bad, err)
		}
	}
}

// fakeSys builds the /sys/dev/block layout of a disk 8:0 with partition 8:1,
// a device-mapper 253:0 and a virtio disk 254:0.
func fakeSys(t *testing.T) string {
	t.Helper()
	sys := t.TempDir()
	sdaDir := filepath.Join(sys, "devices", "pci0000:00", "0000:00:1f.2", "ata1", "host0", "block", "sda")
	writeFake(t, sdaDir, "dev", "8:0\n")
	writeFake(t, filepath.Join(sdaDir, "sda1"), "dev", "8:1\n")
	writeFake(t, filepath.Join(sdaDir, "sda1"), "partition", "1\n")
	writeFake(t, filepath.Join(sys, "devices", "virtual", "block", "dm-0"), "dev", "253:0\n")
	writeFake(t, filepath.Join(sys, "devices", "pci0000:00", "virtio1", "block", "vda"), "dev", "254:0\n")
	mustMkdir(t, filepath.Join(sys, "dev", "block"))
	for dev, target := range map[string]string{
		"8:0":   "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/block/sda",
		"8:1":   "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/block/sda/sda1",
		"253:0": "../../devices/virtual/block/dm-0",
		"254:0": "../../devices/pci0000:00/virtio1/block/vda",
	} {
		if err := os.Symlink(target, filepath.Join(sys, "dev", "block", dev)); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

func TestResolveWholeDisk(t *testing.T) {
	r := DeviceResolver{SysRoot: fakeSys(t)}
	for spec, want := range map[string]Device{
		"8:1":   sda,                    // partition → its disk
		"8:0":   sda,                    // disk stays
		"253:0": {Major: 253, Minor: 0}, // device-mapper stays itself
		"254:0": vda,
	} {
		got, err := r.Resolve(spec)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	if _, err := r.Resolve("9:9"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("Resolve(unknown) error = %v, want ErrUnknownDevice", err)
	}
	for _, bad := range []string{"sda", "relative/path", ""} {
		if _, err := r.Resolve(bad); !errors.Is(err, ErrInvalidDevice) {
			t.Errorf("Resolve(%q) error = %v, want ErrInvalidDevice", bad, err)
		}
	}
	if _, err := r.Resolve("/does/not/exist"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Resolve(missing path) error = %v, want ErrNotExist", err)
	}
}

// /proc is a device-less filesystem on every Linux host.
func TestResolveDevicelessFilesystem(t *testing.T) {
	_, err := DeviceResolver{}.Resolve("/proc/self")
	if !errors.Is(err, ErrNoBlockDevice) || !strings.Contains(err.Error(), "/proc/self") || !strings.Contains(err.Error(), "proc") {
		t.Errorf("Resolve(/proc/self) error = %v, want ErrNoBlockDevice naming the path and filesystem", err)
	}
}

// Paths on anonymous devices (st_dev major 0) are resolved through the
// mount's source. /proc stands in for such a path: its device is looked up
// in a fake mountinfo that says what filesystem it is.
func TestResolveAnonymousDevice(t *testing.T) {
	procDev := mountDeviceOf(t, "/proc")
	blockDev := firstBlockDevice(t)
	want, err := DeviceResolver{}.Resolve(blockDev)
	if err != nil {
		t.Fatal(err)
	}
	devRoot := t.TempDir()
	if err := os.Symlink(blockDev, filepath.Join(devRoot, "fakedisk")); err != nil {
		t.Fatal(err)
	}
	writeFake(t, devRoot, "notablock", "")

	tests := []struct {
		name, fsAndSource string
		wantErr           string // "" = resolves to want
	}{
		{"btrfs subvolume", "btrfs /dev/fakedisk", ""},
		{"tmpfs", "tmpfs tmpfs", "tmpfs"},
		{"overlay", "overlay overlay", "overlay"},
		{"source not a block device", "ext4 /dev/notablock", "ext4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			procRoot := t.TempDir()
			writeFake(t, filepath.Join(procRoot, "self"), "mountinfo", "1 0 "+procDev+" / /proc rw - "+tt.fsAndSource+" rw\n")
			got, err := DeviceResolver{ProcRoot: procRoot, DevRoot: devRoot}.Resolve("/proc/self")
			if tt.wantErr == "" {
				if err != nil || got != want {
					t.Errorf("Resolve = %v, %v; want %v", got, err, want)
				}
				return
			}
			if !errors.Is(err, ErrNoBlockDevice) || !strings.Contains(err.Error(), "/proc/self") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resolve error = %v, want ErrNoBlockDevice naming /proc/self and %s", err, tt.wantErr)
			}
		})
	}
	procRoot := t.TempDir()
	writeFake(t, filepath.Join(procRoot, "self"), "mountinfo", "")
	if _, err := (DeviceResolver{ProcRoot: procRoot}).Resolve("/proc/self"); !errors.Is(err, ErrNoBlockDevice) {
		t.Errorf("Resolve(device missing from mountinfo) error = %v, want ErrNoBlockDevice", err)
	}
}

// mountDeviceOf returns the MAJ:MIN mountinfo lists for mount point.
func mountDeviceOf(t *testing.T, point string) string {
	t.Helper()
	content, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(content), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && fields[4] == point {
			return fields[2]
		}
	}
	t.Fatalf("%s not in /proc/self/mountinfo", point)
	return ""
}

func firstBlockDevice(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir("/sys/block")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no block device in /sys/block: %v", err)
	}
	for _, e := range entries {
		path := filepath.Join("/dev", e.Name())
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
			return path
		}
	}
	t.Fatal("no block device node in /dev")
	return ""
}
