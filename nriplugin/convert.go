package nriplugin

import (
	"encoding/json"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice"
)

// podFromNRI is the pod as the engine knows it. The cgroup parent comes with
// it, so the engine never asks the runtime for it.
func podFromNRI(p *api.PodSandbox) criservice.Pod {
	return criservice.Pod{ID: p.GetId(), Namespace: p.GetNamespace(), Name: p.GetName(), UID: p.GetUid(),
		Labels: p.GetLabels(), Annotations: p.GetAnnotations(), CgroupParent: p.GetLinux().GetCgroupParent()}
}

// Image names the runtimes put in a container's annotations, for an NRI older than
// Container.Image (CRI-O 1.34 speaks v0.9).
var imageAnnotations = []string{"io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"}

// runtimeMounts are the container paths a runtime binds itself: never volumes.
var runtimeMounts = []string{"/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/dev/shm", "/run/.containerenv", "/dev/termination-log"}

// containerFromNRI is the container as the engine knows it, with its cgroup
// path and its bind mounts: the engine asks the runtime for neither.
func containerFromNRI(c *api.Container) criservice.Container {
	image := c.GetImage().GetName()
	for _, key := range imageAnnotations {
		if image == "" {
			image = c.GetAnnotations()[key]
		}
	}
	var mounts []criservice.Mount
	for _, m := range c.GetMounts() {
		bind := m.GetType() == "bind" || slices.Contains(m.GetOptions(), "bind") || slices.Contains(m.GetOptions(), "rbind")
		if !bind || !filepath.IsAbs(m.GetSource()) || slices.Contains(runtimeMounts, m.GetDestination()) {
			continue
		}
		mounts = append(mounts, criservice.Mount{ContainerPath: m.GetDestination(), HostPath: m.GetSource()})
	}
	return criservice.Container{ID: c.GetId(), PodID: c.GetPodSandboxId(), Name: containerName(c), Image: image,
		CgroupsPath: c.GetLinux().GetCgroupsPath(), Mounts: mounts, MountsKnown: true}
}

// crioMetadata is the annotation where CRI-O keeps a container's CRI metadata
// ({"name":…,"attempt":…}).
const crioMetadata = "io.kubernetes.cri-o.Metadata"

// containerName is the name in the container's CRI metadata, which policy rules
// match (as through the proxy). CRI-O 1.34's NRI reads Container.Name from an
// annotation, io.kubernetes.container.name, that nothing sets: there it is empty,
// and the name comes from kubelet's label of that name or from CRI-O's copy of the
// metadata.
func containerName(c *api.Container) string {
	if name := c.GetName(); name != "" {
		return name
	}
	if name := c.GetLabels()["io.kubernetes.container.name"]; name != "" {
		return name
	}
	var md struct {
		Name string `json:"name"`
	}
	if raw := c.GetAnnotations()[crioMetadata]; raw != "" && json.Unmarshal([]byte(raw), &md) == nil {
		return md.Name
	}
	return ""
}

// toCRI is r in CRI's shape, the one the engine tightens: the fields both know.
func toCRI(r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	o := &runtimeapi.LinuxContainerResources{}
	if r == nil {
		return o
	}
	if cpu := r.GetCpu(); cpu != nil {
		o.CpuShares = int64(cpu.GetShares().GetValue())
		o.CpuQuota = cpu.GetQuota().GetValue()
		o.CpuPeriod = int64(cpu.GetPeriod().GetValue())
		o.CpusetCpus, o.CpusetMems = cpu.GetCpus(), cpu.GetMems()
	}
	if mem := r.GetMemory(); mem != nil {
		o.MemoryLimitInBytes = mem.GetLimit().GetValue()
		o.MemorySwapLimitInBytes = mem.GetSwap().GetValue()
	}
	for _, h := range r.GetHugepageLimits() {
		o.HugepageLimits = append(o.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(r.GetUnified()) > 0 {
		o.Unified = maps.Clone(r.GetUnified())
	}
	return o
}

// tightening is what the engine changed in a container's resources: the only
// fields an adjustment or an update from criguard carries, so that nothing
// another plugin or kubelet set is touched.
type tightening struct {
	cpuShares, cpuQuota, cpuPeriod *int64
	memoryLimit                    *int64
	pidsLimit                      *int64
	unified                        map[string]string // keys added or changed
}

func (t tightening) empty() bool {
	return t.cpuShares == nil && t.cpuQuota == nil && t.cpuPeriod == nil && t.memoryLimit == nil && t.pidsLimit == nil && len(t.unified) == 0
}

// tightenPids brings an update's pids limit to the policy's (max, 0: none) when
// have's is unset or looser. CRI has no pids field, so the engine leaves it out;
// but CRI-O applies an update's whole set with runc update, which writes every
// cgroup file from the set, and the limit the container was created with (-1:
// max) would replace the pids.max criguard wrote on v1.
func (t *tightening) tightenPids(have *api.LinuxResources, max uint64) {
	if max == 0 || max > math.MaxInt64 {
		return
	}
	if limit := have.GetPids().GetLimit(); limit > 0 && uint64(limit) <= max {
		return
	}
	v := int64(max)
	t.pidsLimit = &v
}

// diff is what after changes of before. The engine only tightens, so a key it
// dropped from unified cannot happen; one would be left as it is.
func diff(before, after *runtimeapi.LinuxContainerResources) tightening {
	var t tightening
	changed := func(a, b int64) *int64 {
		if a == b {
			return nil
		}
		return &b
	}
	t.cpuShares = changed(before.CpuShares, after.CpuShares)
	t.cpuQuota = changed(before.CpuQuota, after.CpuQuota)
	t.cpuPeriod = changed(before.CpuPeriod, after.CpuPeriod)
	t.memoryLimit = changed(before.MemoryLimitInBytes, after.MemoryLimitInBytes)
	for k, v := range after.Unified {
		if old, ok := before.Unified[k]; !ok || old != v {
			if t.unified == nil {
				t.unified = map[string]string{}
			}
			t.unified[k] = v
		}
	}
	return t
}

// adjustment is t as a creation's adjustment.
func (t tightening) adjustment() *api.ContainerAdjustment {
	a := &api.ContainerAdjustment{}
	if t.cpuShares != nil {
		a.SetLinuxCPUShares(uint64(*t.cpuShares))
	}
	if t.cpuQuota != nil {
		a.SetLinuxCPUQuota(*t.cpuQuota)
	}
	if t.cpuPeriod != nil {
		a.SetLinuxCPUPeriod(*t.cpuPeriod)
	}
	if t.memoryLimit != nil {
		a.SetLinuxMemoryLimit(*t.memoryLimit)
	}
	if t.pidsLimit != nil {
		a.SetLinuxPidLimits(*t.pidsLimit)
	}
	for _, k := range slices.Sorted(maps.Keys(t.unified)) {
		a.AddLinuxUnified(k, t.unified[k])
	}
	return a
}

// applyTo returns a copy of r with t in it: the whole set a running container's
// update carries. Runtimes replace the resources with an update's (containerd
// keeps its memory, CPU, hugepages and unified), so the update names every
// field the container runs with, not only criguard's.
func (t tightening) applyTo(r *api.LinuxResources) *api.LinuxResources {
	var out *api.LinuxResources
	if r == nil {
		out = &api.LinuxResources{}
	} else {
		out = r.Copy()
	}
	if t.cpuShares != nil || t.cpuQuota != nil || t.cpuPeriod != nil {
		if out.Cpu == nil {
			out.Cpu = &api.LinuxCPU{}
		}
		if t.cpuShares != nil {
			out.Cpu.Shares = api.UInt64(uint64(*t.cpuShares))
		}
		if t.cpuQuota != nil {
			out.Cpu.Quota = api.Int64(*t.cpuQuota)
		}
		if t.cpuPeriod != nil {
			out.Cpu.Period = api.UInt64(uint64(*t.cpuPeriod))
		}
	}
	if t.memoryLimit != nil {
		if out.Memory == nil {
			out.Memory = &api.LinuxMemory{}
		}
		out.Memory.Limit = api.Int64(*t.memoryLimit)
	}
	if t.pidsLimit != nil {
		out.Pids = &api.LinuxPids{Limit: *t.pidsLimit}
	}
	if len(t.unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, t.unified)
	}
	return out
}

// String lists t for logs.
func (t tightening) String() string {
	var parts []string
	add := func(name string, v *int64) {
		if v != nil {
			parts = append(parts, name)
		}
	}
	add("cpu.shares", t.cpuShares)
	add("cpu.quota", t.cpuQuota)
	add("cpu.period", t.cpuPeriod)
	add("memory.limit", t.memoryLimit)
	add("pids.limit", t.pidsLimit)
	for _, k := range slices.Sorted(maps.Keys(t.unified)) {
		parts = append(parts, "unified["+k+"]")
	}
	return strings.Join(parts, ",")
}
