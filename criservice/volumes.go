package criservice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
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

// planLimits resolves a decision's io blocks into the plan: devices once, selectors
// for each of cts (the container, or every container of a pod for a pod budget). What
// does not resolve is reported in plan.Unresolved, and the rest is applied.
func (s *Service) planLimits(ctx context.Context, plan *Plan, cts []Container) {
	var fixed, selectors []policy.IOLimits
	for _, l := range plan.Decision.IO {
		if l.SelectsMounts() {
			selectors = append(selectors, l)
		} else {
			fixed = append(fixed, l)
		}
	}
	limits, err := s.limits(fixed)
	if len(selectors) == 0 {
		plan.Limits, plan.Unresolved = limits, err
		return
	}
	more, disks, selErr := s.mountLimits(ctx, selectors, cts)
	plan.Mounts = disks
	if all := append(limits, more...); len(all) > 0 {
		plan.Limits = translate.MergeLimits(all)
	}
	switch {
	case err != nil && selErr != nil:
		plan.Unresolved = errors.Join(err, selErr)
	case err != nil:
		plan.Unresolved = err
	case selErr != nil:
		plan.Unresolved = selErr
	}
}

// mountLimits finds the disks the selectors name for each container: its writable
// layer, its volumes. A filesystem with no block device (tmpfs, NFS, FUSE) is skipped
// with its reason; a path that cannot be resolved now is an error, retried.
func (s *Service) mountLimits(ctx context.Context, selectors []policy.IOLimits, cts []Container) ([]cgroup.IOLimit, []MountDisk, error) {
	var limits []cgroup.IOLimit
	var disks []MountDisk
	var errs []error
	seen := map[string]bool{}
	add := func(l policy.IOLimits, md MountDisk) {
		key := md.Selector + "\x00" + md.HostPath
		if seen[key] {
			return // a pod's containers share its volumes
		}
		seen[key] = true
		chain, err := s.opts.Chains.Chain(ctx, md.HostPath)
		switch {
		case errors.Is(err, cgroup.ErrNoBlockDevice):
			md.Skipped = err.Error()
		case err != nil:
			md.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s %s: %w", md.Kind, md.HostPath, err))
		default:
			md.Chain, md.Device = chain.String(), chain.Disk.String()
			limits = append(limits, cgroup.IOLimit{Device: chain.Disk, ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS})
		}
		disks = append(disks, md)
	}
	for _, l := range selectors {
		if l.IsZero() {
			continue
		}
		for _, ct := range cts {
			if l.Device == policy.DeviceRootfs {
				path, err := s.store.rootfsOf(ctx, ct)
				if err != nil {
					disks = append(disks, MountDisk{Kind: "rootfs", Selector: l.Target(), Error: err.Error()})
					errs = append(errs, fmt.Errorf("writable layer of %s: %w", ct.ID, err))
					continue
				}
				add(l, MountDisk{Kind: "rootfs", HostPath: path, Selector: l.Target()})
				continue
			}
			mounts, err := s.store.mountsOf(ctx, ct)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, m := range mounts {
				kp := parseKubeletPath(m.HostPath)
				if kp.plumbing {
					continue
				}
				if _, ok := l.MatchVolume(kp.volume, m.ContainerPath); ok {
					add(l, MountDisk{Kind: "volume", Volume: kp.volume, Plugin: kp.plugin,
						ContainerPath: m.ContainerPath, HostPath: m.HostPath, Selector: l.Target()})
				}
			}
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("%w: %w", ErrDeviceUnresolved, errors.Join(errs...))
	}
	return limits, disks, err
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
