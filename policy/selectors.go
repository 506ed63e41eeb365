package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Device selectors name a disk by what the container uses rather than by a node's
// device: they are resolved per container, at its start.
const (
	// DeviceRootfs is the disk under the container's writable layer.
	DeviceRootfs = "rootfs"
	// DeviceVolumes is the disks behind the container's volumes; IOLimits.Volumes
	// narrows it to the volumes named there.
	DeviceVolumes = "volumes"
)

var selectorWords = []string{DeviceRootfs, DeviceVolumes}

// SelectsMounts reports whether the block names its disks per container (rootfs or
// volumes) instead of naming a device.
func (l IOLimits) SelectsMounts() bool {
	return l.Device == DeviceRootfs || l.Device == DeviceVolumes
}

// Target names what the block throttles, for messages and as the key io blocks
// merge by: a device, "rootfs", "volumes" or `volumes ["data" "pvc-*"]`.
func (l IOLimits) Target() string {
	if l.Device != DeviceVolumes || len(l.Volumes) == 0 {
		return l.Device
	}
	return fmt.Sprintf("volumes %q", l.Volumes)
}

// MatchVolume reports whether a volume selector takes the mount: with no Volumes
// every volume, otherwise the first glob that matches the volume's name (taken from
// kubelet's host path) or, for a glob starting with "/", its path in the container.
func (l IOLimits) MatchVolume(name, containerPath string) (string, bool) {
	if l.Device != DeviceVolumes {
		return "", false
	}
	if len(l.Volumes) == 0 {
		return DeviceVolumes, true
	}
	for _, pattern := range l.Volumes {
		if strings.HasPrefix(pattern, "/") {
			if glob(pattern, containerPath) {
				return pattern, true
			}
			continue
		}
		if name != "" && glob(pattern, name) {
			return pattern, true
		}
	}
	return "", false
}

// decodeTarget reads what an io block throttles: device (a label, path, MAJ:MIN,
// "rootfs" or "volumes") or volumes (names or container paths), exactly one of them.
func (d *decoder) decodeTarget(b *hcl.Block, content *hcl.BodyContent, limits *IOLimits) bool {
	device, volumes := content.Attributes["device"], content.Attributes["volumes"]
	switch {
	case device != nil && volumes != nil:
		d.errorf(volumes.NameRange, "Both device and volumes",
			"An io block throttles either a device or the container's volumes: remove device = … to throttle the volumes, or move volumes into an io block of its own.")
		return false
	case volumes != nil:
		return d.decodeVolumes(volumes, limits)
	case device == nil:
		d.errorf(b.DefRange, "io block names no device",
			"Say what to throttle: device = \"data\" (a device label, a path or MAJ:MIN), device = \"rootfs\" (the container's writable layer), device = \"volumes\" (every volume's disk) or volumes = [\"data\"].")
		return false
	}
	ref, set := d.stringValue(device, `device = "data"`)
	if !set {
		return false
	}
	if slices.Contains(selectorWords, ref) {
		limits.Device = ref
		return true
	}
	_, isLabel := d.policy.Devices[ref]
	_, declared := d.deviceRanges[ref]
	if !isLabel && !declared && !strings.HasPrefix(ref, "/") && !majMinPattern.MatchString(ref) {
		known := append(slices.Clone(d.deviceOrder), selectorWords...)
		d.errorf(device.Expr.Range(), "Unknown device",
			"No device is labelled %q.%s Use a declared label (%s), \"rootfs\", \"volumes\", an absolute path or MAJ:MIN.",
			ref, didYouMean(ref, known), listOrNone(d.deviceOrder))
		return false
	}
	path, ok := d.resolveDevice(device)
	limits.Device = path
	return ok
}

func (d *decoder) decodeVolumes(attr *hcl.Attribute, limits *IOLimits) bool {
	names, ok := d.stringListValue(attr, `volumes = ["data", "pvc-*"]`)
	if !ok {
		return false
	}
	if len(names) == 0 {
		d.errorf(attr.Expr.Range(), "No volume selected",
			"volumes is empty, so the block throttles nothing. Name volumes (\"data\", \"pvc-*\") or container paths (\"/var/lib/mysql\"), or write device = \"volumes\" for all of them.")
		return false
	}
	for _, name := range names {
		switch {
		case strings.TrimSpace(name) == "":
			d.errorf(attr.Expr.Range(), "Empty volume name",
				"Each entry is a volume name or glob (\"data\", \"pvc-*\") or a container path (\"/var/lib/mysql\").")
			ok = false
		case slices.Contains(selectorWords, name) || name == "*":
			d.errorf(attr.Expr.Range(), "Every volume",
				"%q in volumes would select every volume; write device = \"volumes\" instead, which says so.", name)
			ok = false
		}
	}
	limits.Device, limits.Volumes = DeviceVolumes, names
	return ok
}

// checkDeviceLabel refuses a device label that io blocks would read as a selector.
func (d *decoder) checkDeviceLabel(b *hcl.Block, name string) bool {
	if !slices.Contains(selectorWords, name) {
		return true
	}
	d.errorf(b.LabelRanges[0], "Reserved device label",
		"%q names the container's own disks in io blocks (device = %q), so a device with this label could never be named; call it something else, such as \"data\".", name, name)
	return false
}
