package translate

import (
	"fmt"
	"path"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/opencontainers/cgroups/systemd"
)

const (
	sliceSuffix = ".slice"
	scopeSuffix = ".scope"
	// defaultSystemdParent is what runc and Docker use for an empty slice.
	defaultSystemdParent = "system.slice"
)

// IsCgroupfsPath reports whether a runtime cgroupsPath is a cgroupfs path, which
// criguard may create, rather than a systemd unit (slice:prefix:name), which only
// systemd makes.
func IsCgroupfsPath(cgroupsPath string) bool { return strings.HasPrefix(cgroupsPath, "/") }

// CgroupDir turns a runtime cgroupsPath into an absolute cgroup directory
// under mount. cgroupfs form: "/kubepods/burstable/pod<uid>/<id>"; systemd
// form: "slice:prefix:name", e.g. "kubepods-burstable-pod<uid>.slice:cri-containerd:<id>"
// → <mount>/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope.
// Any root slice works; the result never leaves mount.
func CgroupDir(mount, cgroupsPath string) (string, error) {
	rel, err := cgroupsPathRel(cgroupsPath)
	if err != nil {
		return "", err
	}
	dir, err := cgroup.CleanJoin(mount, rel)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidCgroupsPath, cgroupsPath, err)
	}
	return dir, nil
}

// cgroupsPathRel turns either form into a path relative to the mount.
func cgroupsPathRel(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidCgroupsPath)
	}
	if strings.HasPrefix(cgroupsPath, "/") {
		return cgroupsPath, nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w %q: want /cgroupfs/path or slice:prefix:name", ErrInvalidCgroupsPath, cgroupsPath)
	}
	parent, prefix, name := parts[0], parts[1], parts[2]
	if name == "" || strings.Contains(name, "/") || strings.Contains(prefix, "/") {
		return "", fmt.Errorf("%w %q: name must be non-empty and prefix and name without \"/\"", ErrInvalidCgroupsPath, cgroupsPath)
	}
	if parent == "" {
		parent = defaultSystemdParent
	}
	sliceDir, err := systemd.ExpandSlice(parent)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidCgroupsPath, cgroupsPath, err)
	}
	return path.Join(sliceDir, unitName(prefix, name)), nil
}

// unitName follows runc: a name ending in ".slice" is the unit itself,
// anything else runs in the scope "<prefix>-<name>.scope".
func unitName(prefix, name string) string {
	if strings.HasSuffix(name, sliceSuffix) {
		return name
	}
	if prefix == "" {
		return name + scopeSuffix
	}
	return prefix + "-" + name + scopeSuffix
}

// PodCgroupDir turns a pod's CRI linux.cgroup_parent (cgroupfs
// "/kubepods/besteffort/pod<uid>" or systemd "kubepods-besteffort-pod<uid>.slice")
// into its directory under mount.
func PodCgroupDir(mount, cgroupParent string) (string, error) {
	rel := cgroupParent
	if !strings.HasPrefix(cgroupParent, "/") {
		expanded, err := systemd.ExpandSlice(cgroupParent)
		if err != nil {
			return "", fmt.Errorf("%w %q: want /cgroupfs/path or a systemd slice: %w", ErrInvalidCgroupParent, cgroupParent, err)
		}
		rel = expanded
	}
	dir, err := cgroup.CleanJoin(mount, rel)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidCgroupParent, cgroupParent, err)
	}
	return dir, nil
}

// ParentOfCgroupsPath is the pod cgroup parent a container's cgroup path sits in:
// "slice:prefix:id" → "slice"; "/kubepods/burstable/pod<uid>/<id>" (or a path read
// from /proc/PID/cgroup) → its directory. "" when there is none.
func ParentOfCgroupsPath(cgroupsPath string) string {
	if !strings.HasPrefix(cgroupsPath, "/") {
		parts := strings.Split(cgroupsPath, ":")
		if len(parts) != 3 || !strings.HasSuffix(parts[0], sliceSuffix) {
			return ""
		}
		return parts[0]
	}
	parent := path.Dir(path.Clean(cgroupsPath))
	if parent == "/" || parent == "." {
		return ""
	}
	return parent
}

// DockerCgroupsPath builds the cgroupsPath Docker gave runc for container
// id: systemd driver → "<parent or system.slice>:docker:<id>", cgroupfs →
// "<parent or /docker>/<id>".
func DockerCgroupsPath(cgroupParent, id string, systemdDriver bool) string {
	if systemdDriver {
		if cgroupParent == "" {
			cgroupParent = defaultSystemdParent
		}
		return cgroupParent + ":docker:" + id
	}
	if cgroupParent == "" {
		cgroupParent = "/docker"
	}
	return path.Join(cgroupParent, id)
}

// QoS classes as the policy's match block names them.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// QoSFromCgroupParent reads the pod's QoS class out of its cgroup parent,
// for both drivers and any cgroup root ("/kubepods/burstable/pod<uid>",
// "kubepods-pod<uid>.slice", "kubelet-kubepods-besteffort-pod<uid>.slice"):
// the level after "kubepods" is the class, or the pod itself for
// guaranteed pods. "" when the parent is not a kubelet pod cgroup.
func QoSFromCgroupParent(cgroupParent string) string {
	var levels []string
	if strings.HasPrefix(cgroupParent, "/") {
		levels = strings.Split(strings.Trim(cgroupParent, "/"), "/")
	} else {
		// systemd escapes "-" in the pod uid as "_", so "-" splits levels.
		levels = strings.Split(strings.TrimSuffix(cgroupParent, sliceSuffix), "-")
	}
	for i := 0; i+1 < len(levels); i++ {
		if levels[i] != "kubepods" {
			continue
		}
		switch next := levels[i+1]; {
		case next == QoSBurstable || next == QoSBestEffort:
			if i+2 < len(levels) && strings.HasPrefix(levels[i+2], "pod") {
				return next
			}
		case strings.HasPrefix(next, "pod"):
			return QoSGuaranteed
		}
	}
	return ""
}
