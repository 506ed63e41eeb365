package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Link is one block device on the way from a path to the device blk-throttle takes.
type Link struct {
	Name   string `json:"name"` // kernel name: sda1, dm-3, loop7, md0, nvme0n1p2
	Device Device `json:"device"`
	// Note says what it is: "partition of sda", "vg0-pvc--1234 over loop7",
	// "backed by /srv/img". Empty for a plain disk.
	Note string `json:"note,omitempty"`
}

// String renders "dm-3 (vg0-pvc--1234 over loop7)".
func (l Link) String() string {
	if l.Note == "" {
		return l.Name
	}
	return l.Name + " (" + l.Note + ")"
}

// Chain is how a path reaches the device its I/O is throttled on: the block device
// under its filesystem, then its whole disk when that is a partition. A device-mapper,
// md or loop device is where the I/O is submitted, so the chain stops there: a limit
// on the disks beneath would throttle every other user of them too.
type Chain struct {
	Path  string `json:"path"`
	Links []Link `json:"links"`
	Disk  Device `json:"disk"`
	// identity tells the same device from a new one that reuses its number (a loop
	// detached and attached to another file, a dm table replaced).
	identity string
}

// String renders "/var/lib/kubelet/pods/…/mount → dm-3 (vg0-pvc--1234) → 253:3".
func (c Chain) String() string {
	parts := []string{c.Path}
	for _, l := range c.Links {
		parts = append(parts, l.String())
	}
	return strings.Join(append(parts, c.Disk.String()), " → ")
}

// Chain resolves path (any path on a filesystem, or a block device node) to the
// device blk-throttle accepts, with every link on the way. A path on overlay follows
// its upper directory, where writes land. A path on a filesystem without a block
// device (tmpfs, NFS, FUSE, an overlay whose upper directory has none) is
// ErrNoBlockDevice naming it. A filesystem that does not answer within
// defaultStatTimeout (2s) is ErrFilesystemHung.
func (r DeviceResolver) Chain(path string) (Chain, error) {
	return r.chainContext(context.Background(), path)
}

func (r DeviceResolver) chainContext(ctx context.Context, path string) (Chain, error) {
	st, mounts, err := r.statPath(ctx, path)
	if err != nil {
		return Chain{Path: path}, err
	}
	c, err := r.chain(ctx, path, st, mounts, 0)
	c.Path = path
	return c, err
}

// maxOverlayDepth bounds overlays whose upper directory is on another overlay.
const maxOverlayDepth = 4

// statPath stats path, bounded by ctx, unless mountinfo already shows that it is
// on a filesystem no disk can be found for (NFS, FUSE, CIFS, …): that one is not
// touched at all, so that a server that is gone cannot hold the caller even for
// the deadline. The mounts read are returned for the rest of the resolution.
func (r DeviceResolver) statPath(ctx context.Context, path string) (unix.Stat_t, []mountEntry, error) {
	mounts, mountsErr := r.readMounts(path)
	if m, ok := mountAt(mounts, path); ok && r.diskless(m) {
		return unix.Stat_t{}, mounts, fmt.Errorf("%w: %s is on %s (source %q, device %s)", ErrNoBlockDevice, path, m.fsType, m.source, m.device)
	}
	st, err := statContext(ctx, path)
	switch {
	case errors.Is(err, ErrFilesystemHung):
		return st, mounts, err
	case err != nil:
		return st, mounts, fmt.Errorf("cgroup: resolve device of %s: %w", path, err)
	}
	if mountsErr != nil {
		mounts = nil // read again, and reported, when the device is anonymous
	}
	return st, mounts, nil
}

// diskless says a mount has no block device to find and nothing under it could
// name one: an anonymous device whose source is not /dev/…, neither an overlay
// (whose upper directory may be on a disk) nor tmpfs or devtmpfs (where device
// nodes live). Remote and FUSE filesystems are all of this kind.
func (r DeviceResolver) diskless(m mountEntry) bool {
	if m.device.Major != 0 {
		return false
	}
	switch m.fsType {
	case "overlay", "tmpfs", "devtmpfs", "ramfs":
		return false
	}
	return !strings.HasPrefix(m.source, "/dev/")
}

// mountAt is the mount path is under by its name: the longest mount point that is
// path or one of its parents, the last mounted when several stack there. Symlinks
// are not followed (that would touch the filesystem); the stat that follows does.
func mountAt(mounts []mountEntry, path string) (mountEntry, bool) {
	path = filepath.Clean(path)
	best, found := mountEntry{}, false
	for _, m := range mounts {
		under := path == m.point || m.point == "/" || strings.HasPrefix(path, m.point+"/")
		if under && (!found || len(m.point) >= len(best.point)) {
			best, found = m, true
		}
	}
	return best, found
}

func (r DeviceResolver) chain(ctx context.Context, path string, st unix.Stat_t, mounts []mountEntry, depth int) (Chain, error) {
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return r.chainOf(deviceFromDev(st.Rdev))
	}
	d := deviceFromDev(st.Dev)
	if d.Major != 0 {
		return r.chainOf(d)
	}
	// Anonymous device (tmpfs, overlay, btrfs subvolume, NFS, FUSE): the mount says.
	m, err := r.mountOfIn(mounts, path, d)
	if err != nil {
		return Chain{}, err
	}
	if upper := mountOption(m.superOpts, "upperdir"); m.fsType == "overlay" && upper != "" && depth < maxOverlayDepth {
		upperSt, upperMounts, err := r.statPath(ctx, upper)
		var inner Chain
		if err == nil {
			inner, err = r.chain(ctx, upper, upperSt, upperMounts, depth+1)
		}
		inner.Links = append([]Link{{Name: "overlay", Device: d, Note: "upper " + upper}}, inner.Links...)
		return inner, err
	}
	if source, ok := r.sourceBlockDevice(m); ok {
		return r.chainOf(source)
	}
	return Chain{}, fmt.Errorf("%w: %s is on %s (source %q, device %s)", ErrNoBlockDevice, path, m.fsType, m.source, d)
}

func mountOption(opts []string, key string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

// chainOf follows a block device through /sys/dev/block: a partition to its disk;
// dm, md, loop and disks stay themselves, described by their name, slaves and
// backing file.
func (r DeviceResolver) chainOf(d Device) (Chain, error) {
	sysDir, err := r.sysBlockDir(d)
	if err != nil {
		return Chain{}, err
	}
	link := r.describe(d, sysDir)
	c := Chain{Links: []Link{link}, Disk: d}
	if isPartition(sysDir) {
		parentDir := filepath.Dir(sysDir)
		parent, err := readDevFile(filepath.Join(parentDir, "dev"))
		if err != nil {
			return Chain{}, fmt.Errorf("cgroup: parent of partition %s: %w", d, err)
		}
		c.Links[0].Note = joinNotes("partition of "+filepath.Base(parentDir), link.Note)
		c.Links = append(c.Links, r.describe(parent, parentDir))
		c.Disk, sysDir = parent, parentDir
	}
	c.identity = r.identity(sysDir)
	return c, nil
}

func (r DeviceResolver) sysBlockDir(d Device) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(orDefault(r.SysRoot, "/sys"), "dev", "block", d.String()))
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrUnknownDevice, d, err)
	}
	return dir, nil
}

func isPartition(sysDir string) bool {
	_, err := os.Stat(filepath.Join(sysDir, "partition"))
	return err == nil
}

// describe names a device and says what kind it is.
func (r DeviceResolver) describe(d Device, sysDir string) Link {
	l := Link{Name: filepath.Base(sysDir), Device: d}
	var notes []string
	if name := readTrimmed(filepath.Join(sysDir, "dm", "name")); name != "" {
		notes = append(notes, name)
	}
	if level := readTrimmed(filepath.Join(sysDir, "md", "level")); level != "" {
		notes = append(notes, level)
	}
	if backing := readTrimmed(filepath.Join(sysDir, "loop", "backing_file")); backing != "" {
		notes = append(notes, "backed by "+backing)
	}
	if slaves := listDir(filepath.Join(sysDir, "slaves")); len(slaves) > 0 {
		notes = append(notes, "over "+strings.Join(slaves, "+"))
	}
	l.Note = strings.Join(notes, ", ")
	return l
}

// identity is what changes when a device number is reused by another device.
func (r DeviceResolver) identity(sysDir string) string {
	return strings.Join([]string{sysDir,
		readTrimmed(filepath.Join(sysDir, "dm", "uuid")),
		readTrimmed(filepath.Join(sysDir, "dm", "name")),
		readTrimmed(filepath.Join(sysDir, "loop", "backing_file")),
		readTrimmed(filepath.Join(sysDir, "md", "uuid")),
	}, "\x00")
}

func joinNotes(a, b string) string {
	if b == "" {
		return a
	}
	return a + ", " + b
}

func readDevFile(path string) (Device, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return Device{}, err
	}
	return ParseDevice(strings.TrimSpace(string(content)))
}

func readTrimmed(path string) string {
	content, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(content))
}

func listDir(path string) []string {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// ChainCache resolves paths to chains, remembering them by st_dev: every volume on
// one filesystem shares the work. An entry is checked on use and dropped when its
// device is gone or is another device under the same number. Paths on anonymous
// devices (tmpfs, overlay, btrfs) are resolved through mountinfo each time, since
// their mount can change under the same st_dev.
type ChainCache struct {
	Resolver DeviceResolver

	mu      sync.Mutex
	byStDev map[uint64]Chain
}

// Chain returns path's chain, from the cache when its st_dev still names the same
// device. ctx bounds the wait on a filesystem that does not answer (ErrFilesystemHung).
func (c *ChainCache) Chain(ctx context.Context, path string) (Chain, error) {
	st, mounts, err := c.Resolver.statPath(ctx, path)
	if err != nil {
		return Chain{Path: path}, err
	}
	key := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		key = st.Rdev
	}
	cacheable := unix.Major(key) != 0
	if cacheable {
		c.mu.Lock()
		cached, ok := c.byStDev[key]
		c.mu.Unlock()
		if ok && c.stillValid(cached) {
			cached.Path = path
			return cached, nil
		}
	}
	chain, err := c.Resolver.chain(ctx, path, st, mounts, 0)
	chain.Path = path
	if err != nil || !cacheable {
		c.forget(key)
		return chain, err
	}
	c.mu.Lock()
	if c.byStDev == nil {
		c.byStDev = map[uint64]Chain{}
	}
	c.byStDev[key] = chain
	c.mu.Unlock()
	return chain, nil
}

func (c *ChainCache) stillValid(chain Chain) bool {
	dir, err := c.Resolver.sysBlockDir(chain.Disk)
	return err == nil && c.Resolver.identity(dir) == chain.identity
}

func (c *ChainCache) forget(key uint64) {
	c.mu.Lock()
	delete(c.byStDev, key)
	c.mu.Unlock()
}

// Forget drops every entry.
func (c *ChainCache) Forget() {
	c.mu.Lock()
	clear(c.byStDev)
	c.mu.Unlock()
}
