package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

// kubeletPodsDir is where kubelet mounts pods' volumes on a stock node.
const kubeletPodsDir = "/var/lib/kubelet/pods"

// volumeChecker is what `check --host` asks of the host about the volumes on it; a
// hostChecker that is not one skips the volume report.
type volumeChecker interface {
	// KubeletVolumes lists the host paths of the volumes kubelet has mounted here.
	KubeletVolumes() ([]string, error)
	// Chain follows a host path to the device blk-throttle takes.
	Chain(path string) (cgroup.Chain, error)
}

func (h realHost) KubeletVolumes() ([]string, error) {
	// <pods>/<uid>/volumes/<plugin>/<name>: the same for every plugin, CSI's mount
	// below it holds the same filesystem once mounted.
	return filepath.Glob(filepath.Join(kubeletPodsDir, "*", "volumes", "*", "*"))
}

func (h realHost) Chain(path string) (cgroup.Chain, error) { return h.resolver.Chain(path) }

// checkSelectorsOnHost reports the volumes on this node that the policy's volume
// selectors take, each with its device or the reason it has none. Selectors resolve
// per container at its start, so nothing here fails the check: a volume on tmpfs is
// skipped then, not an error.
func checkSelectorsOnHost(path string, p *policy.Policy, host hostChecker, stderr io.Writer) string {
	var selectors []policy.IOLimits
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		for _, l := range p.Classes[name].IO {
			if l.SelectsMounts() {
				selectors = append(selectors, l)
			}
		}
	}
	if len(selectors) == 0 {
		return ""
	}
	summary := "; rootfs and volumes resolved per container at its start"
	vc, ok := host.(volumeChecker)
	if !ok {
		return summary
	}
	paths, err := vc.KubeletVolumes()
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot list kubelet's volumes: %v\n", path, err)
		return summary
	}
	found, skipped := 0, 0
	for _, hostPath := range paths {
		name := filepath.Base(hostPath)
		var by string
		for _, l := range selectors {
			if pattern, ok := l.MatchVolume(name, ""); ok {
				by = pattern
				break
			}
		}
		if by == "" {
			continue
		}
		if filepath.Base(filepath.Dir(hostPath)) == "kubernetes.io~csi" {
			hostPath = filepath.Join(hostPath, "mount") // CSI mounts the volume below its dir
		}
		chain, err := vc.Chain(hostPath)
		switch {
		case errors.Is(err, cgroup.ErrNoBlockDevice):
			skipped++
			fmt.Fprintf(stderr, "%s: volume %q (%s) gets no limit, skipped: %v\n", path, name, by, err)
		case err != nil:
			fmt.Fprintf(stderr, "%s: volume %q (%s): %v\n", path, name, by, err)
		default:
			found++
			fmt.Fprintf(stderr, "%s: volume %q (%s): %s\n", path, name, by, chain)
		}
	}
	return summary + fmt.Sprintf(" (on this node now: %s on a disk, %d skipped)", plural(found, "volume"), skipped)
}
