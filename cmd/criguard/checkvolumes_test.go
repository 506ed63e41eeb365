package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

// volumeHost has kubelet volumes: data on an LVM volume, a CSI PVC on a partition's
// disk, a projected token on tmpfs.
type volumeHost struct {
	fakeHost
	chains map[string]cgroup.Chain
}

func (h volumeHost) KubeletVolumes() ([]string, error) {
	return []string{
		"/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data",
		"/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-7",
		"/var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access-1",
		"/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache",
	}, nil
}

func (h volumeHost) Chain(path string) (cgroup.Chain, error) {
	if c, ok := h.chains[path]; ok {
		return c, nil
	}
	return cgroup.Chain{}, fmt.Errorf("%w: %s is on tmpfs (source \"tmpfs\", device 0:52)", cgroup.ErrNoBlockDevice, path)
}

func TestCheckHostReportsVolumes(t *testing.T) {
	path := writePolicy(t, "policy.hcl", `
class "v" {
  io {
    volumes   = ["data", "pvc-*", "kube-api-*"]
    write_bps = "10MiB"
  }
}
`)
	data := "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data"
	pvc := "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-7/mount"
	host := volumeHost{chains: map[string]cgroup.Chain{
		data: {Path: data, Links: []cgroup.Link{{Name: "dm-3", Device: cgroup.Device{Major: 253, Minor: 3}, Note: "vg0-data"}}, Disk: cgroup.Device{Major: 253, Minor: 3}},
		pvc:  {Path: pvc, Links: []cgroup.Link{{Name: "sdb1", Note: "partition of sdb"}, {Name: "sdb"}}, Disk: cgroup.Device{Major: 8, Minor: 16}},
	}}
	stdout, stderr, code := runCheckWith(t, host, "--host", path)
	if code != 0 || !strings.Contains(stdout, "rootfs and volumes resolved per container at its start (on this node now: 2 volumes on a disk, 1 skipped)") {
		t.Errorf("check --host = %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, want := range []string{
		`volume "data" (data): ` + data + ` → dm-3 (vg0-data) → 253:3`,
		`volume "pvc-7" (pvc-*): ` + pvc + ` → sdb1 (partition of sdb) → sdb → 8:16`,
		`volume "kube-api-access-1" (kube-api-*) gets no limit, skipped: cgroup: path is on a filesystem without a block device`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check --host stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "cache") {
		t.Errorf("a volume no selector takes is reported:\n%s", stderr)
	}
}
