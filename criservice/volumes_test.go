package criservice

import (
	"context"
	"fmt"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
)

func TestParseKubeletPath(t *testing.T) {
	const pod = "/var/lib/kubelet/pods/6f1c2a9e-1b7d-4c1e-9a43-0d5b8c1e2f3a"
	for _, tt := range []struct {
		name, hostPath string
		want           kubeletPath
	}{
		{"CSI", pod + "/volumes/kubernetes.io~csi/pvc-1234/mount", kubeletPath{plugin: "kubernetes.io~csi", volume: "pvc-1234"}},
		{"in-tree local", pod + "/volumes/kubernetes.io~local-volume/local-pv-3", kubeletPath{plugin: "kubernetes.io~local-volume", volume: "local-pv-3"}},
		{"in-tree cloud disk", pod + "/volumes/kubernetes.io~aws-ebs/pvc-9", kubeletPath{plugin: "kubernetes.io~aws-ebs", volume: "pvc-9"}},
		{"emptyDir", pod + "/volumes/kubernetes.io~empty-dir/data", kubeletPath{plugin: "kubernetes.io~empty-dir", volume: "data"}},
		{"projected (tmpfs)", pod + "/volumes/kubernetes.io~projected/kube-api-access-x7k2p", kubeletPath{plugin: "kubernetes.io~projected", volume: "kube-api-access-x7k2p"}},
		{"secret (tmpfs)", pod + "/volumes/kubernetes.io~secret/tls", kubeletPath{plugin: "kubernetes.io~secret", volume: "tls"}},
		{"subPath", pod + "/volume-subpaths/data/app/0", kubeletPath{volume: "data"}},
		{"hostPath", "/mnt/disks/ssd0", kubeletPath{}},
		{"other kubelet root", "/data/kubelet/pods/abc/volumes/kubernetes.io~empty-dir/cache", kubeletPath{plugin: "kubernetes.io~empty-dir", volume: "cache"}},
		{"etc-hosts", pod + "/etc-hosts", kubeletPath{plumbing: true}},
		{"termination log", pod + "/containers/app/3c1d2e4f", kubeletPath{plumbing: true}},
		{"volumes dir itself", pod + "/volumes/kubernetes.io~empty-dir", kubeletPath{}},
	} {
		if got := parseKubeletPath(tt.hostPath); got != tt.want {
			t.Errorf("%s: parseKubeletPath(%q) = %+v, want %+v", tt.name, tt.hostPath, got, tt.want)
		}
	}
}

// fakeChains maps host paths to devices; a path it does not know is on tmpfs.
type fakeChains map[string]cgroup.Device

func (f fakeChains) Chain(_ context.Context, path string) (cgroup.Chain, error) {
	d, ok := f[path]
	if !ok {
		return cgroup.Chain{Path: path}, fmt.Errorf("%w: %s is on tmpfs (source \"tmpfs\", device 0:42)", cgroup.ErrNoBlockDevice, path)
	}
	return cgroup.Chain{Path: path, Links: []cgroup.Link{{Name: "dm-3", Device: d, Note: "vg0-pvc--1234"}}, Disk: d}, nil
}

// rootfsResolver adds a writable layer per container to a resolver.
type rootfsResolver struct {
	Resolver
	layers map[string]string
}

func (r rootfsResolver) Rootfs(_ context.Context, id string) (string, error) {
	if p, ok := r.layers[id]; ok {
		return p, nil
	}
	return "", fmt.Errorf("no layer for %s", id)
}

const volumesPolicy = `
class "data" {
  io {
    volumes   = ["data", "/logs"]
    write_bps = "1MiB"
  }
}
class "all" {
  io {
    device     = "volumes"
    write_iops = 50
  }
  io {
    device    = "rootfs"
    write_bps = "2MiB"
  }
}
class "pod-data" {
  io {
    volumes   = ["data"]
    write_bps = "4MiB"
  }
}
rule "data" {
  match {
    namespaces = ["data"]
  }
  class = "data"
}
rule "all" {
  match {
    namespaces = ["all"]
  }
  class = "all"
}
rule "pod" {
  match {
    namespaces = ["pod"]
  }
  class = "pod-data"
  scope = "pod"
}
`

const podDir = "/var/lib/kubelet/pods/uid-p1"

var (
	dataDisk = cgroup.Device{Major: 253, Minor: 3}
	logsDisk = cgroup.Device{Major: 7, Minor: 0}
	rootDisk = cgroup.Device{Major: 254, Minor: 0}
	// A container's mounts as kubelet sends them: two volumes on disks, a hostPath,
	// a projected token on tmpfs, and kubelet's own files.
	testMounts = []*runtimeapi.Mount{
		{ContainerPath: "/data", HostPath: podDir + "/volumes/kubernetes.io~empty-dir/data"},
		{ContainerPath: "/cache", HostPath: podDir + "/volumes/kubernetes.io~csi/pvc-77/mount"},
		{ContainerPath: "/logs", HostPath: "/mnt/logs"},
		{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: podDir + "/volumes/kubernetes.io~projected/kube-api-access-1"},
		{ContainerPath: "/etc/hosts", HostPath: podDir + "/etc-hosts"},
	}
	testChains = fakeChains{
		podDir + "/volumes/kubernetes.io~empty-dir/data":   dataDisk,
		podDir + "/volumes/kubernetes.io~csi/pvc-77/mount": {Major: 8, Minor: 16},
		"/mnt/logs":           logsDisk,
		podDir + "/etc-hosts": rootDisk,
		"/snap/c1/fs":         rootDisk,
		"/snap/c2/fs":         rootDisk,
	}
)

func newVolumesEnv(t *testing.T, v2 bool) *testEnv {
	var v2Host *fakeHost
	if v2 {
		v2Host = newFakeHostV2(t)
	}
	e := newTestEnv(t, func(o *Options) {
		if v2Host != nil {
			o.IO = v2Host.io
		}
		o.Chains = testChains
		o.Resolver = rootfsResolver{Resolver: o.Resolver, layers: map[string]string{"c1": "/snap/c1/fs", "c2": "/snap/c2/fs"}}
	})
	if v2Host != nil {
		e.host = v2Host
	}
	e.policy.Store(mustPolicy(t, volumesPolicy))
	e.fake.Mu.Lock()
	e.fake.Mounts = map[string][]*runtimeapi.Mount{}
	e.fake.Mu.Unlock()
	return e
}

// limitsOf is what criguard wants in the container's cgroup, one "DEV key=value" per key set.
func limitsOf(t *testing.T, e *testEnv, id string) string {
	t.Helper()
	plan, err := e.plan(id, planOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range plan.Limits {
		for _, kv := range []struct {
			key string
			v   uint64
		}{{"rbps", l.ReadBPS}, {"wbps", l.WriteBPS}, {"riops", l.ReadIOPS}, {"wiops", l.WriteIOPS}} {
			if kv.v != 0 {
				out = append(out, fmt.Sprintf("%s %s=%d", l.Device, kv.key, kv.v))
			}
		}
	}
	return strings.Join(out, ", ")
}

// startWithMounts creates and starts a container whose CreateContainer carries mounts.
func (e *testEnv) startWithMounts(t *testing.T, id, podID, name string, mounts []*runtimeapi.Mount) string {
	t.Helper()
	e.fake.AddContainer(id, podID, name)
	e.fake.Mu.Lock()
	rel := e.fake.Paths[id]
	sandbox := e.fake.Pods[podID]
	e.fake.Mounts[id] = mounts
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel)
	err := e.hook("CreateContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name},
				Image: &runtimeapi.ImageSpec{Image: "busybox"}, Mounts: mounts},
			SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: sandbox.Metadata}}),
		marshal(t, &runtimeapi.CreateContainerResponse{ContainerId: id}), nil)
	if err != nil {
		t.Fatalf("CreateContainer hook: %v", err)
	}
	if err := e.hook("StartContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.StartContainerRequest{ContainerId: id}), marshal(t, &runtimeapi.StartContainerResponse{}), nil); err != nil {
		t.Fatalf("StartContainer hook: %v", err)
	}
	return rel
}

func TestVolumesByName(t *testing.T) {
	e := newVolumesEnv(t, false)
	e.runPod(t, "p1", "data", "burstable", nil)
	rel := e.startWithMounts(t, "c1", "p1", "app", testMounts)
	// data by name, /mnt/logs by container path; pvc-77, the token and /etc/hosts not.
	if got := limitsOf(t, e, "c1"); got != "7:0 wbps=1048576, 253:3 wbps=1048576" {
		t.Errorf("limits = %q, want the data and logs disks only", got)
	}
	// The fake cgroup file keeps the last line written, as a real one shows each device.
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "253:3 1048576" {
		t.Errorf("write_bps = %q", got)
	}
	plan, err := e.plan("c1", planOptions{})
	if err != nil || plan.Unresolved != nil {
		t.Fatal(err, plan.Unresolved)
	}
	var found []string
	for _, m := range plan.Mounts {
		found = append(found, m.ContainerPath+"="+m.Device)
	}
	if strings.Join(found, " ") != "/data=253:3 /logs=7:0" {
		t.Errorf("mounts = %q", found)
	}
}

func TestEveryVolumeAndRootfs(t *testing.T) {
	e := newVolumesEnv(t, false)
	e.runPod(t, "p1", "all", "burstable", nil)
	e.startWithMounts(t, "c1", "p1", "app", testMounts)
	if got := limitsOf(t, e, "c1"); got != "7:0 wiops=50, 8:16 wiops=50, 253:3 wiops=50, 254:0 wbps=2097152" {
		t.Errorf("limits = %q, want every volume on a disk and the writable layer's disk", got)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	var token *MountDisk
	for i, m := range ex.Mounts {
		if m.Volume == "kube-api-access-1" {
			token = &ex.Mounts[i]
		}
		if m.HostPath == podDir+"/etc-hosts" {
			t.Errorf("kubelet's /etc/hosts is not a volume: %+v", m)
		}
	}
	if token == nil || !strings.Contains(token.Skipped, "tmpfs") || token.Device != "" {
		t.Errorf("projected token = %+v, want skipped on tmpfs", token)
	}
	if ex.Error != "" || len(ex.Notes) > 1 {
		t.Errorf("a tmpfs volume is not an error: %q %q", ex.Error, ex.Notes)
	}
}

// After a restart of criguard the mounts come back from the container's status.
func TestVolumesAfterRestart(t *testing.T) {
	e := newVolumesEnv(t, false)
	e.runPod(t, "p1", "data", "burstable", nil)
	rel := e.startWithMounts(t, "c1", "p1", "app", testMounts)
	e.host.mkdir(t, rel) // empties the files, as if criguard had written nothing yet

	restarted, err := New(Options{Runtime: e.svc.opts.Runtime, IO: e.host.io, Resolver: e.svc.opts.Resolver,
		Devices: fakeDevices{}, Chains: testChains, Policy: e.policy.Load})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "253:3 1048576" {
		t.Errorf("after restart write_bps = %q, want the volumes' disks again", got)
	}
	ct, _ := restarted.store.container("c1")
	if !ct.MountsKnown || len(ct.Mounts) != len(testMounts) {
		t.Errorf("after restart mounts = %+v, want them from the status", ct.Mounts)
	}
}

// A pod budget on a volume's disk: the pod's cgroup on v2; split on v1.
func TestPodBudgetOnVolume(t *testing.T) {
	t.Run("v2", func(t *testing.T) {
		e := newVolumesEnv(t, true)
		parent := e.runPod(t, "p1", "pod", "burstable", nil)
		rel := e.startWithMounts(t, "c1", "p1", "app", testMounts)
		// RunPodSandbox knew no volume: the container's start brings them in.
		if got := e.host.file(t, parent, "io.max"); got != "253:3 rbps=max wbps=4194304 riops=max wiops=max" {
			t.Errorf("pod io.max = %q, want the data volume's disk", got)
		}
		if got := e.host.file(t, rel, "io.max"); got != "" {
			t.Errorf("container io.max = %q, want none: the pod holds the budget", got)
		}
	})
	t.Run("v1", func(t *testing.T) {
		e := newVolumesEnv(t, false)
		e.runPod(t, "p1", "pod", "burstable", nil)
		first := e.startWithMounts(t, "c1", "p1", "app", testMounts)
		// The second container does not mount data itself: it shares the pod's budget.
		second := e.startWithMounts(t, "c2", "p1", "sidecar", nil)
		for _, rel := range []string{first, second} {
			if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "253:3 2097152" {
				t.Errorf("%s write_bps = %q, want half the pod budget on the data disk", rel, got)
			}
		}
	})
}

// A writable layer not found yet is retried, and the volumes are applied meanwhile.
func TestRootfsNotFoundIsRetried(t *testing.T) {
	e := newVolumesEnv(t, false)
	e.runPod(t, "p1", "all", "burstable", nil)
	e.startWithMounts(t, "c3", "p1", "app", testMounts) // no layer known for c3
	if got := limitsOf(t, e, "c3"); got != "7:0 wiops=50, 8:16 wiops=50, 253:3 wiops=50" {
		t.Errorf("limits = %q, want the volumes applied all the same", got)
	}
	_, _, err := e.svc.ApplyContainer(context.Background(), "c3")
	if err == nil || !strings.Contains(err.Error(), "writable layer") {
		t.Errorf("ApplyContainer error = %v, want the writable layer unresolved", err)
	}
}
