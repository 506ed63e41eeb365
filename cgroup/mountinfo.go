package cgroup

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Mode is how the host mounts cgroups.
type Mode int

// Modes, decided once from mountinfo.
const (
	ModeUnknown Mode = iota // no cgroup mount at all
	ModeV1                  // only v1 controller hierarchies
	ModeHybrid              // v1 controllers plus a cgroup2 mount (systemd "hybrid")
	ModeV2                  // only the unified cgroup2 hierarchy
)

// String returns "v1", "hybrid", "v2" or "unknown".
func (m Mode) String() string {
	switch m {
	case ModeV1:
		return "v1"
	case ModeHybrid:
		return "hybrid"
	case ModeV2:
		return "v2"
	default:
		return "unknown"
	}
}

// mountEntry is one line of mountinfo, with the fields criguard uses.
type mountEntry struct {
	device    Device // st_dev of files on this mount
	root      string // the mounted subtree of the filesystem
	point     string // where it is mounted
	fsType    string
	source    string
	superOpts []string
}

// Hierarchy is what /proc/self/mountinfo says: which controller is mounted where.
type Hierarchy struct {
	mode    Mode
	v1      map[string]mountEntry // controller ("blkio", "name=systemd") → its mount
	unified *mountEntry           // the cgroup2 mount, if any
}

// DetectHost reads procRoot/self/mountinfo; procRoot "" means "/proc".
func DetectHost(procRoot string) (*Hierarchy, error) {
	path := filepath.Join(orDefault(procRoot, "/proc"), "self", "mountinfo")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: detect host: %w", err)
	}
	defer f.Close()
	h, err := ParseMountInfo(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// ParseMountInfo reads mountinfo (proc(5)) and records every cgroup and
// cgroup2 mount. When a hierarchy is mounted more than once, the mount of
// the hierarchy's root ("/") wins over bind mounts of a subtree.
func ParseMountInfo(r io.Reader) (*Hierarchy, error) {
	mounts, err := parseMounts(r)
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{v1: map[string]mountEntry{}}
	hasV1Controller := false
	for _, m := range mounts {
		switch m.fsType {
		case "cgroup2":
			if h.unified == nil || (h.unified.root != "/" && m.root == "/") {
				h.unified = &m
			}
		case "cgroup":
			for _, controller := range v1Controllers(m.superOpts) {
				if old, ok := h.v1[controller]; !ok || (old.root != "/" && m.root == "/") {
					h.v1[controller] = m
				}
				if !strings.HasPrefix(controller, "name=") {
					hasV1Controller = true
				}
			}
		}
	}
	switch {
	case hasV1Controller && h.unified != nil:
		h.mode = ModeHybrid
	case hasV1Controller:
		h.mode = ModeV1
	case h.unified != nil:
		h.mode = ModeV2
	}
	return h, nil
}

// v1Controllers picks the controller names out of a v1 mount's super
// options ("rw,cpu,cpuacct" → cpu, cpuacct; "rw,name=systemd" → name=systemd).
func v1Controllers(superOpts []string) []string {
	var controllers []string
	for _, opt := range superOpts {
		switch {
		case opt == "rw" || opt == "ro" || opt == "noprefix" || opt == "clone_children" ||
			opt == "xattr" || opt == "cpuset_v2_mode" || opt == "favordynmods":
		case strings.HasPrefix(opt, "release_agent="):
		default:
			controllers = append(controllers, opt)
		}
	}
	return controllers
}

// Mode is the host's cgroup mode.
func (h *Hierarchy) Mode() Mode { return h.mode }

// ControllerMount returns the v1 mount point of controller ("blkio",
// "pids", "name=systemd", ...); controller "" means the cgroup2 mount.
func (h *Hierarchy) ControllerMount(controller string) (string, bool) {
	if controller == "" {
		return h.UnifiedMount()
	}
	m, ok := h.v1[controller]
	return m.point, ok
}

// UnifiedMount returns the cgroup2 mount point.
func (h *Hierarchy) UnifiedMount() (string, bool) {
	if h.unified == nil {
		return "", false
	}
	return h.unified.point, true
}

// IO picks the I/O backend for this host: v1 blkio when blkio is a v1
// controller (v1 and hybrid hosts), otherwise v2 io on the cgroup2 mount.
func (h *Hierarchy) IO() (IO, error) {
	if m, ok := h.v1["blkio"]; ok {
		return blkioV1{mount: m.point}, nil
	}
	if h.unified != nil {
		return ioV2{mount: h.unified.point}, nil
	}
	return nil, ErrNoIOController
}

// parseMounts parses mountinfo with moby's parser, which handles the
// optional fields and the kernel's octal escapes ("\040" for a space). The table
// is kept between mount changes, so each entry keeps copies of the fields criguard
// reads and only the options it reads (a cgroup v1 mount's controllers, an
// overlay's upperdir): the parser's strings are slices of the whole line, and an
// overlay's line, with every lower layer, runs to kilobytes.
func parseMounts(r io.Reader) ([]mountEntry, error) {
	infos, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMountInfo, err)
	}
	mounts := make([]mountEntry, 0, len(infos))
	for _, info := range infos {
		mounts = append(mounts, mountEntry{
			device:    Device{Major: uint32(info.Major), Minor: uint32(info.Minor)},
			root:      strings.Clone(info.Root),
			point:     strings.Clone(info.Mountpoint),
			fsType:    strings.Clone(info.FSType),
			source:    strings.Clone(info.Source),
			superOpts: keptOptions(info.FSType, info.VFSOptions),
		})
	}
	return mounts, nil
}

// keptOptions are the superblock options criguard reads, copied.
func keptOptions(fsType, vfsOptions string) []string {
	var kept []string
	for opt := range strings.SplitSeq(vfsOptions, ",") {
		if fsType == "cgroup" || fsType == "overlay" && strings.HasPrefix(opt, "upperdir=") {
			kept = append(kept, strings.Clone(opt))
		}
	}
	return kept
}

func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}
