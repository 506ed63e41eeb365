package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// blockTree is a fake /sys: devices under devices/…, each linked from dev/block/MAJ:MIN
// as the kernel does.
type blockTree struct {
	t    *testing.T
	root string
}

// add makes the device directory rel (under devices/) with its dev file, extra files
// ("partition", "dm/name", …) and its dev/block link.
func (b *blockTree) add(rel, dev string, files map[string]string) {
	b.t.Helper()
	dir := filepath.Join(b.root, "devices", rel)
	writeFake(b.t, dir, "dev", dev+"\n")
	for name, content := range files {
		writeFake(b.t, filepath.Join(dir, filepath.Dir(name)), filepath.Base(name), content+"\n")
	}
	link := filepath.Join(b.root, "dev", "block", dev)
	os.Remove(link)
	if err := os.Symlink(filepath.Join("..", "..", "devices", rel), link); err != nil {
		b.t.Fatal(err)
	}
}

// slave records that holder sits over the device named slave.
func (b *blockTree) slave(rel, slave string) {
	b.t.Helper()
	mustMkdir(b.t, filepath.Join(b.root, "devices", rel, "slaves", slave))
}

func TestChainDeviceShapes(t *testing.T) {
	tree := &blockTree{t: t, root: t.TempDir()}
	mustMkdir(t, filepath.Join(tree.root, "dev", "block"))
	tree.add("pci0000:00/ata1/block/sda", "8:0", nil)
	tree.add("pci0000:00/ata1/block/sda/sda1", "8:1", map[string]string{"partition": "1"})
	tree.add("pci0000:00/ata2/block/sdb", "8:16", nil)
	tree.add("pci0000:00/ata3/block/sdc", "8:32", nil)
	tree.add("virtual/block/loop7", "7:7", map[string]string{"loop/backing_file": "/srv/pv.img"})
	tree.add("virtual/block/dm-3", "253:3", map[string]string{"dm/name": "vg0-pvc--1234", "dm/uuid": "LVM-abc"})
	tree.slave("virtual/block/dm-3", "loop7")
	tree.add("virtual/block/dm-4", "253:4", map[string]string{"dm/name": "luks-data", "dm/uuid": "CRYPT-LUKS2-x"})
	tree.slave("virtual/block/dm-4", "sda1")
	tree.add("virtual/block/md0", "9:0", map[string]string{"md/level": "raid1"})
	tree.slave("virtual/block/md0", "sdb")
	tree.slave("virtual/block/md0", "sdc")
	tree.add("virtual/block/md0/md0p1", "259:8", map[string]string{"partition": "1"})
	tree.add("pci0000:00/nvme/nvme0/nvme0n1", "259:0", nil)
	tree.add("pci0000:00/nvme/nvme0/nvme0n1/nvme0n1p2", "259:2", map[string]string{"partition": "2"})
	r := DeviceResolver{SysRoot: tree.root}

	for _, tt := range []struct {
		name, dev, want string
		disk            Device
	}{
		{"disk", "8:0", "sda → 8:0", sda},
		{"partition", "8:1", "sda1 (partition of sda) → sda → 8:0", sda},
		{"lvm over loop", "253:3", "dm-3 (vg0-pvc--1234, over loop7) → 253:3", Device{253, 3}},
		{"dm-crypt over a partition", "253:4", "dm-4 (luks-data, over sda1) → 253:4", Device{253, 4}},
		{"md", "9:0", "md0 (raid1, over sdb+sdc) → 9:0", Device{9, 0}},
		{"md partition", "259:8", "md0p1 (partition of md0) → md0 (raid1, over sdb+sdc) → 9:0", Device{9, 0}},
		{"loop", "7:7", "loop7 (backed by /srv/pv.img) → 7:7", Device{7, 7}},
		{"nvme namespace", "259:0", "nvme0n1 → 259:0", Device{259, 0}},
		{"nvme partition", "259:2", "nvme0n1p2 (partition of nvme0n1) → nvme0n1 → 259:0", Device{259, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := ParseDevice(tt.dev)
			c, err := r.chainOf(d)
			if err != nil {
				t.Fatal(err)
			}
			c.Path = "/p"
			if got := c.String(); got != "/p → "+tt.want || c.Disk != tt.disk {
				t.Errorf("chain = %q (disk %s), want %q (disk %s)", got, c.Disk, "/p → "+tt.want, tt.disk)
			}
			// The chain and Resolve agree on the disk.
			if disk, err := r.Resolve(tt.dev); err != nil || disk != tt.disk {
				t.Errorf("Resolve(%s) = %s, %v; want %s", tt.dev, disk, err, tt.disk)
			}
		})
	}
	if _, err := r.chainOf(Device{1, 99}); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("chainOf(unknown) error = %v, want ErrUnknownDevice", err)
	}
}

// Filesystems without a block device are named with their type, whatever they are.
func TestChainNoBlockDevice(t *testing.T) {
	procDev := mountDeviceOf(t, "/proc")
	for fsType, source := range map[string]string{
		"tmpfs": "tmpfs", "nfs4": "server:/export", "fuse.sshfs": "user@host:", "overlay": "overlay",
	} {
		procRoot := t.TempDir()
		writeFake(t, filepath.Join(procRoot, "self"), "mountinfo", "1 0 "+procDev+" / /proc rw - "+fsType+" "+source+" rw\n")
		c, err := DeviceResolver{ProcRoot: procRoot}.Chain("/proc/self")
		if !errors.Is(err, ErrNoBlockDevice) || !strings.Contains(err.Error(), fsType) || c.Path != "/proc/self" {
			t.Errorf("%s: Chain = %+v, %v; want ErrNoBlockDevice naming %s", fsType, c, err, fsType)
		}
	}
}

// The cache answers by st_dev while the device is the same one, and resolves again
// when its number is reused by another device or it is gone.
func TestChainCache(t *testing.T) {
	node := firstBlockDevice(t)
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		t.Fatal(err)
	}
	dev := deviceFromDev(st.Rdev).String()
	tree := &blockTree{t: t, root: t.TempDir()}
	mustMkdir(t, filepath.Join(tree.root, "dev", "block"))
	tree.add("virtual/block/loop9", dev, map[string]string{"loop/backing_file": "/a.img"})
	cache := &ChainCache{Resolver: DeviceResolver{SysRoot: tree.root}}

	first, err := cache.Chain(context.Background(), node)
	if err != nil || !strings.Contains(first.String(), "/a.img") {
		t.Fatalf("Chain = %v, %v", first, err)
	}
	// Same device: served from the cache, even if the description on disk lies.
	writeFake(t, filepath.Join(tree.root, "devices", "virtual", "block", "loop9", "slaves", "x"), "y", "")
	if again, _ := cache.Chain(context.Background(), node); again.String() != first.String() {
		t.Errorf("cached chain = %v, want %v", again, first)
	}
	// The number now names a loop over another file: resolved again.
	tree.add("virtual/block/loop9", dev, map[string]string{"loop/backing_file": "/b.img"})
	if again, err := cache.Chain(context.Background(), node); err != nil || !strings.Contains(again.String(), "/b.img") {
		t.Errorf("after reuse Chain = %v, %v; want the new backing file", again, err)
	}
	// Gone.
	os.Remove(filepath.Join(tree.root, "dev", "block", dev))
	if _, err := cache.Chain(context.Background(), node); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("after removal Chain error = %v, want ErrUnknownDevice", err)
	}
}

// A container's root on overlay is throttled where its writes land: the upper dir.
func TestChainOverlayFollowsUpperDir(t *testing.T) {
	procDev := mountDeviceOf(t, "/proc")
	node := firstBlockDevice(t)
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		t.Fatal(err)
	}
	dev := deviceFromDev(st.Rdev)
	tree := &blockTree{t: t, root: t.TempDir()}
	mustMkdir(t, filepath.Join(tree.root, "dev", "block"))
	tree.add("pci0000:00/virtio1/block/vdz", dev.String(), nil)

	procRoot := t.TempDir()
	writeFake(t, filepath.Join(procRoot, "self"), "mountinfo",
		"1 0 "+procDev+" / /proc rw - overlay overlay rw,lowerdir=/l,upperdir="+node+",workdir=/w\n")
	c, err := DeviceResolver{ProcRoot: procRoot, SysRoot: tree.root}.Chain("/proc/self")
	want := "/proc/self → overlay (upper " + node + ") → vdz → " + dev.String()
	if err != nil || c.String() != want || c.Disk != dev {
		t.Errorf("Chain = %q, %v; want %q", c, err, want)
	}

	// An upper dir on a filesystem without a disk: skipped with the reason.
	writeFake(t, filepath.Join(procRoot, "self"), "mountinfo",
		"1 0 "+procDev+" / /proc rw - overlay overlay rw,lowerdir=/l,upperdir=/proc/self,workdir=/w\n")
	if _, err := (DeviceResolver{ProcRoot: procRoot, SysRoot: tree.root}).Chain("/proc/self"); !errors.Is(err, ErrNoBlockDevice) {
		t.Errorf("overlay over itself: error = %v, want ErrNoBlockDevice", err)
	}
}
