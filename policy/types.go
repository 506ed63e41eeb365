package policy

// Scope says which cgroup a decision's limits are written to.
type Scope string

const (
	// ScopeContainer throttles each container's own cgroup.
	ScopeContainer Scope = "container"
	// ScopePod throttles the pod's cgroup: one budget shared by all its containers.
	ScopePod Scope = "pod"
)

// IOLimits is one io block. Device is what the operator wrote, with a device label
// already replaced by that device's path: a block device path, "MAJ:MIN", or any path
// on a filesystem (resolved to MAJ:MIN on the host by the caller); or a selector
// resolved per container, DeviceRootfs or DeviceVolumes. 0 means no limit.
type IOLimits struct {
	Device string
	// Volumes narrows DeviceVolumes to these volume names or container paths (globs).
	Volumes   []string
	ReadBPS   uint64
	WriteBPS  uint64
	ReadIOPS  uint64
	WriteIOPS uint64
	// Burst lets the keys above run faster until a credit is spent (burst.go).
	Burst IOBurst
	// Weight is the proportional share on the device, in cgroup v2 io.weight units
	// (MinWeight–MaxWeight, the kernel's default DefaultWeight); 0: criguard sets none.
	// It divides the disk between the cgroup and its siblings only (see weight.go).
	Weight uint64
	// Protect and Yield share the device by pressure (protect.go): a protected
	// workload's neighbours that yield give way while its io.pressure is above target.
	Protect IOProtect
	Yield   IOYield
}

// IsZero reports whether the block throttles nothing (a weight is no throttle).
func (l IOLimits) IsZero() bool {
	return l.ReadBPS == 0 && l.WriteBPS == 0 && l.ReadIOPS == 0 && l.WriteIOPS == 0
}

// Class is a named set of throttles, one IOLimits per device, and the
// container's other resources.
type Class struct {
	Name      string
	IO        []IOLimits
	Resources Resources
}

// Rule assigns a class to the workloads it matches. An empty match field matches
// everything; a non-empty one must match (any element of a list, every entry of a map).
type Rule struct {
	Name  string
	Class string
	Scope Scope

	Namespaces     []string          // globs on the pod namespace
	PodLabels      map[string]string // every key must be present; values are globs
	PodAnnotations map[string]string // every key must be present; values are globs
	QoS            []string          // guaranteed, burstable, besteffort
	Containers     []string          // globs on the container name (container scope only)
	Images         []string          // globs on the image reference (container scope only)
}

// AnnotationSettings bound what pods may ask for with criguard.io/* annotations.
type AnnotationSettings struct {
	// Enabled lets pods pick a class or ask for numbers by annotation. Off, every
	// annotation is ignored.
	Enabled bool
	// AllowLoosen lets an annotation replace the rule's numbers, up to the max_*
	// bounds; off (the default), an annotation can only tighten them.
	AllowLoosen bool
	// Device (label resolved) the numeric annotations apply to; by default the first
	// declared device.
	Device string
	// Classes that pods may pick by annotation; none unless listed.
	Classes []string
	// The most an annotation may ask for; 0 means unbounded. An ask above it is ignored.
	MaxReadBPS, MaxWriteBPS, MaxReadIOPS, MaxWriteIOPS uint64
}

// Policy is a validated policy file.
type Policy struct {
	Filename    string
	Source      []byte            // the file's text, kept as the last good policy
	Devices     map[string]string // label → path or MAJ:MIN
	Classes     map[string]*Class
	Rules       []*Rule // file order: the first match wins
	Annotations AnnotationSettings
}
