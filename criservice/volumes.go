package criservice

import (
	"context"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
)

// ChainResolver follows a host path through its block devices to the one
// blk-throttle takes (cgroup.ChainCache); ctx bounds a filesystem that hangs.
type ChainResolver interface {
	Chain(ctx context.Context, path string) (cgroup.Chain, error)
}

// RootfsResolver finds the host directory of a container's writable layer; the
// resolver chain implements it when one of its runtimes can answer.
type RootfsResolver = resolve.RootfsResolver

// Mount is one of the mounts kubelet asked for, with the host side.
type Mount struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
}

func mountsFromCRI(mounts []*runtimeapi.Mount) []Mount {
	out := make([]Mount, 0, len(mounts))
	for _, m := range mounts {
		if m.GetHostPath() != "" {
			out = append(out, Mount{ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath()})
		}
	}
	return out
}

// MountDisk is one of a container's disks as a selector found it, for explain.
type MountDisk struct {
	Kind          string `json:"kind"`             // "volume" or "rootfs"
	Volume        string `json:"volume,omitempty"` // the volume's name in the pod, from kubelet's host path
	Plugin        string `json:"plugin,omitempty"` // kubelet's volume plugin dir: kubernetes.io~csi, kubernetes.io~empty-dir…
	ContainerPath string `json:"containerPath,omitempty"`
	HostPath      string `json:"hostPath"`
	Selector      string `json:"selector"` // the io block that took it: "rootfs", "volumes", `volumes ["data"]`
	Chain         string `json:"chain,omitempty"`
	Device        string `json:"device,omitempty"` // MAJ:MIN the limit is written for
	// Skipped says why the mount gets no limit: its filesystem has no block device.
	Skipped string `json:"skipped,omitempty"`
	// Error is a failure to resolve it now; retried by the reconcile loop.
	Error string `json:"error,omitempty"`
}

// kubeletPath is what a host path says about itself when kubelet made it.
type kubeletPath struct {
	plugin, volume string
	// plumbing: /etc/hosts, /dev/termination-log and the like, never a volume.
	plumbing bool
}

// parseKubeletPath reads kubelet's host path shapes, whatever its root dir:
//
//	<root>/pods/<uid>/volumes/<plugin>/<name>[/mount]             a volume (CSI adds /mount)
//	<root>/pods/<uid>/volume-subpaths/<name>/<container>/<index>  a subPath of a volume
//	<root>/pods/<uid>/etc-hosts, <root>/pods/<uid>/containers/…   kubelet's own files
//
// Anything else is a hostPath volume, which has no name to match but its container path.
func parseKubeletPath(hostPath string) kubeletPath {
	parts := strings.Split(strings.Trim(hostPath, "/"), "/")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] != "pods" || parts[i+1] == "" {
			continue
		}
		rest := parts[i+2:]
		switch {
		case rest[0] == "volumes" && len(rest) >= 3:
			return kubeletPath{plugin: rest[1], volume: rest[2]}
		case rest[0] == "volume-subpaths" && len(rest) >= 2:
			return kubeletPath{volume: rest[1]}
		case rest[0] == "etc-hosts" || rest[0] == "containers":
			return kubeletPath{plumbing: true}
		}
	}
	return kubeletPath{}
}

func hasSelectors(io []policy.IOLimits) bool {
	return slices.ContainsFunc(io, policy.IOLimits.SelectsMounts)
}

func (c *cache) setMounts(id string, mounts []Mount) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.containers[id]; ok {
		ct.Mounts, ct.MountsKnown = mounts, true
	}
}

func (c *cache) setRootfs(id, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ct, ok := c.containers[id]; ok {
		ct.Rootfs = path
	}
}

func (c *cache) containerIDsOf(podID string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var ids []string
	for _, ct := range c.containers {
		if ct.PodID == podID {
			ids = append(ids, ct.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
