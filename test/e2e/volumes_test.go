//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// volumesPolicy throttles a container's "data" volumes (and later ones named late-*)
// in one namespace, its writable layer in another, and both in a third.
const volumesPolicy = `class "data-volume" {
  io {
    volumes   = ["data", "late-*"]
    write_bps = "1MiB"
  }
}

class "writable-layer" {
  io {
    device    = "rootfs"
    write_bps = "1MiB"
  }
}

class "both" {
  io {
    volumes   = ["data"]
    write_bps = "1MiB"
  }
  io {
    device    = "rootfs"
    write_bps = "2MiB"
  }
}

rule "both" {
  match {
    namespaces = ["vol-both"]
  }
  class = "both"
}

rule "data" {
  match {
    namespaces = ["vol-data"]
  }
  class = "data-volume"
}

rule "rootfs" {
  match {
    namespaces = ["vol-rootfs"]
  }
  class = "writable-layer"
}
`

// Writes of 3 MiB, O_DIRECT: at 1 MiB/s about 3 s, unthrottled well under 1 s.
const (
	writeData    = "dd if=/dev/zero of=/data/f bs=64k count=48 oflag=direct"
	writeOther   = "dd if=/dev/zero of=/other/f bs=64k count=48 oflag=direct"
	writeRootfs  = "dd if=/dev/zero of=/scratch bs=64k count=48 oflag=direct"
	writeLate    = "dd if=/dev/zero of=/late/f bs=64k count=48 oflag=direct"
	throttledMin = 2300 * time.Millisecond
	throttledMax = 6 * time.Second
	fastMax      = 1500 * time.Millisecond
)

// volumePod is a pod whose container mounts two volumes on block devices of their
// own at kubelet's host paths: "data" (emptyDir shape) on a loop device, "pvc-e2e"
// (CSI shape) on dm-linear over another loop, or on a plain loop when the kernel has
// no device-mapper.
type volumePod struct {
	pod         *lab.Pod
	podID, id   string
	dir         string // the container's blkio cgroup
	data, other lab.BlockVolume
	kubeletRoot string
}

func startVolumePod(t *testing.T, endpoint, ns string) *volumePod {
	t.Helper()
	v := &volumePod{pod: lab.NewPod(t, "vols", ns), kubeletRoot: filepath.Join(t.TempDir(), "kubelet")}
	// Volumes before the pod: cleanups run in reverse, so the pod goes first.
	v.data = lab.LoopVolume(t, lab.KubeletVolumePath(v.kubeletRoot, v.pod.UID, "kubernetes.io~empty-dir", "data"), 64)
	otherPath := lab.KubeletVolumePath(v.kubeletRoot, v.pod.UID, "kubernetes.io~csi", "pvc-e2e")
	var err error
	v.other, err = lab.LinearVolume(t, otherPath, 64)
	if errors.Is(err, lab.ErrNoDeviceMapper) {
		t.Logf("no device-mapper in this kernel (%v): the second volume is a plain loop device", err)
		v.other = lab.LoopVolume(t, otherPath, 64)
	} else if err != nil {
		t.Fatal(err)
	}
	v.podID = lab.RunPod(t, endpoint, v.pod)
	v.id = v.start(t, endpoint, "app",
		lab.BindMount(v.data.MountPoint, "/data"), lab.BindMount(v.other.MountPoint, "/other"))
	v.dir = lab.BlkioDir(t, v.pod.CgroupParent()+"/"+v.id)
	return v
}

func (v *volumePod) start(t *testing.T, endpoint, name string, mounts ...*runtimeapi.Mount) string {
	t.Helper()
	id := lab.StartContainer(t, endpoint, v.podID, v.pod, &lab.Container{
		Name:    name,
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
		Mounts:  mounts,
	})
	lab.WaitContainerState(t, endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
	return id
}

// TestVolumesContainerd proves on real containerd with real loop devices that a
// volume selector throttles the disk behind that volume only, that rootfs throttles
// the writable layer only, and that a volume made after criguard started is found at
// the next container start.
func TestVolumesContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	rootDisk := lab.WholeDisk(t, ctrd.Root) // where the snapshots, so the writable layers, live
	policyPath := newPolicyFile(t, volumesPolicy)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--reconcile-interval", "1h")
	ep := cg.Endpoint
	explainFlags := []string{"--runtime-endpoint", ctrd.Endpoint, "--containerd-address", ctrd.Socket, "--policy", policyPath,
		"--state-dir", cg.StateDir}

	t.Run("data volume", func(t *testing.T) {
		v := startVolumePod(t, ep, "vol-data")
		assertThrottle(t, cg, "data volume's loop device", v.dir, writeBPSFile, v.data.Dev, 1*mib)
		assertThrottle(t, cg, "other volume's device", v.dir, writeBPSFile, v.other.Dev, 0)
		assertThrottle(t, cg, "root disk", v.dir, writeBPSFile, rootDisk, 0)
		measure(t, cg, ep, v.id, writeData, "48+0 records out", throttledMin, throttledMax)
		measure(t, cg, ep, v.id, writeOther, "48+0 records out", 0, fastMax)
		measure(t, cg, ep, v.id, writeRootfs, "48+0 records out", 0, fastMax)

		text := criguardCLI(t, append(append([]string{"explain"}, explainFlags...), v.id)...)
		t.Logf("criguard explain %s:\n%s", v.id, text)
		loopName := filepath.Base(v.data.Device)
		for _, want := range []string{
			`/data ← ` + v.data.MountPoint + ` (volume "data", kubernetes.io~empty-dir, by volumes ["data" "late-*"]) → ` +
				loopName + ` (backed by `,
			"→ " + v.data.Dev + "; limit " + v.data.Dev + " rbps=- wbps=1MiB",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("explain lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "/other ←") || strings.Contains(text, "foreign:") {
			t.Errorf("explain lists a volume the selector does not take:\n%s", text)
		}

		// A volume made now, after criguard started, is found when a container starts.
		late := lab.LoopVolume(t, lab.KubeletVolumePath(v.kubeletRoot, v.pod.UID, "kubernetes.io~empty-dir", "late-1"), 64)
		lateID := v.start(t, ep, "late", lab.BindMount(late.MountPoint, "/late"))
		lateDir := lab.BlkioDir(t, v.pod.CgroupParent()+"/"+lateID)
		assertThrottle(t, cg, "late volume's loop device", lateDir, writeBPSFile, late.Dev, 1*mib)
		measure(t, cg, ep, lateID, writeLate, "48+0 records out", throttledMin, throttledMax)
	})

	t.Run("rootfs", func(t *testing.T) { rootfsThrottled(t, cg, rootDisk) })

	t.Run("after restart", func(t *testing.T) { volumeLimitAfterRestart(t, cg) })
	t.Run("first instruction", func(t *testing.T) { volumeLimitsBeforeFirstInstruction(t, cg, rootDisk) })
}

// volumeLimitAfterRestart: a data volume's limit lifted while criguard is down comes
// back when it starts, its mounts learned again from the runtime.
func volumeLimitAfterRestart(t *testing.T, cg *lab.CriguardProcess) {
	v := startVolumePod(t, cg.Endpoint, "vol-data")
	assertThrottle(t, cg, "data volume's loop device", v.dir, writeBPSFile, v.data.Dev, 1*mib)
	cg.Stop(t, 15*time.Second)
	lab.SetThrottle(t, v.dir, writeBPSFile, v.data.Dev, 0)
	assertThrottle(t, cg, "lifted while criguard is down", v.dir, writeBPSFile, v.data.Dev, 0)
	cg.Start(t)
	took, err := lab.WaitThrottle(v.dir, writeBPSFile, v.data.Dev, 1*mib, 10*time.Second)
	if err != nil {
		t.Fatalf("after a restart: %v%s", err, criguardLog(cg))
	}
	t.Logf("data volume's limit back %.2fs after the restart", took.Seconds())
}

// rootfsThrottled: device = "rootfs" throttles the writable layer's disk, and leaves
// the volumes alone.
func rootfsThrottled(t *testing.T, cg *lab.CriguardProcess, rootDisk string) {
	ep := cg.Endpoint
	v := startVolumePod(t, ep, "vol-rootfs")
	assertThrottle(t, cg, "writable layer's disk", v.dir, writeBPSFile, rootDisk, 1*mib)
	assertThrottle(t, cg, "data volume's loop device", v.dir, writeBPSFile, v.data.Dev, 0)
	measure(t, cg, ep, v.id, writeRootfs, "48+0 records out", throttledMin, throttledMax)
	// A limit on the root disk does not bind a loop device over a file on it: the
	// loop worker's writes to the backing file are not the container's.
	measure(t, cg, ep, v.id, writeData, "48+0 records out", 0, fastMax)
	measure(t, cg, ep, v.id, writeOther, "48+0 records out", 0, fastMax)
}

// TestVolumesDocker proves the selectors on dockerd behind cri-dockerd: the writable
// layer comes from Docker's GraphDriver.
func TestVolumesDocker(t *testing.T) {
	dock := lab.Docker(t)
	rootDisk := lab.WholeDisk(t, dock.DataRoot)
	cg := lab.Criguard(t, dock.Endpoint, "--policy", newPolicyFile(t, volumesPolicy),
		"--docker-endpoint", dock.DockerEndpoint, "--reconcile-interval", "1h")
	t.Run("data volume", func(t *testing.T) {
		v := startVolumePod(t, cg.Endpoint, "vol-data")
		assertThrottle(t, cg, "data volume's loop device", v.dir, writeBPSFile, v.data.Dev, 1*mib)
		assertThrottle(t, cg, "other volume's device", v.dir, writeBPSFile, v.other.Dev, 0)
		measure(t, cg, cg.Endpoint, v.id, writeData, "48+0 records out", throttledMin, throttledMax)
		measure(t, cg, cg.Endpoint, v.id, writeOther, "48+0 records out", 0, fastMax)
		measure(t, cg, cg.Endpoint, v.id, writeRootfs, "48+0 records out", 0, fastMax)
	})
	t.Run("rootfs", func(t *testing.T) { rootfsThrottled(t, cg, rootDisk) })
	t.Run("after restart", func(t *testing.T) { volumeLimitAfterRestart(t, cg) })
	t.Run("first instruction", func(t *testing.T) { volumeLimitsBeforeFirstInstruction(t, cg, rootDisk) })
}

// volumeLimitsBeforeFirstInstruction: the container's first command already sees the
// limits on its data volume's device and on its writable layer's disk.
func volumeLimitsBeforeFirstInstruction(t *testing.T, cg *lab.CriguardProcess, rootDisk string) {
	pod := lab.NewPod(t, "first", "vol-both")
	data := lab.LoopVolume(t, lab.KubeletVolumePath(filepath.Join(t.TempDir(), "kubelet"), pod.UID, "kubernetes.io~empty-dir", "data"), 64)
	podID := lab.RunPod(t, cg.Endpoint, pod)
	id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "first",
		Command: []string{"sh", "-c", "cat /sys/fs/cgroup/blkio/" + writeBPSFile + "; echo end-of-first; sleep 3600"},
		Mounts:  []*runtimeapi.Mount{lab.BindMount(data.MountPoint, "/data")}})
	var logs string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if logs = lab.Crictl(t, cg.Endpoint, "logs", id); strings.Contains(logs, "end-of-first") {
			break
		}
	}
	for _, want := range []string{fmt.Sprintf("%s %d", data.Dev, 1*mib), fmt.Sprintf("%s %d", rootDisk, 2*mib)} {
		if !strings.Contains(logs, want) {
			t.Errorf("the container's first command read %q from its %s, want %q%s", logs, writeBPSFile, want, criguardLog(cg))
		}
	}
}
