//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/test/e2e/lab"
)

// TestLabContainerd proves the lab's containerd runs a pod the way kubelet's cgroupfs
// driver would, without criguard: the throttle tests rely on this cgroup layout.
func TestLabContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	pod := lab.NewPod(t, "lab", "lab-ns")
	podID := lab.RunPod(t, ctrd.Endpoint, pod)
	id := lab.StartContainer(t, ctrd.Endpoint, podID, pod, &lab.Container{
		Name: "sleeper", Command: []string{"sleep", "3600"},
	})
	got := lab.WaitContainerState(t, ctrd.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)

	wantCgroup := pod.CgroupParent() + "/" + id
	if got.Info.RuntimeSpec.Linux.CgroupsPath != wantCgroup {
		t.Errorf("cgroupsPath = %q, want %q", got.Info.RuntimeSpec.Linux.CgroupsPath, wantCgroup)
	}
	assertInCgroup(t, got.Info.Pid, "blkio", wantCgroup)
}

// TestLabDocker proves dockerd behind cri-dockerd runs a pod and a container directly.
func TestLabDocker(t *testing.T) {
	dock := lab.Docker(t)
	pod := lab.NewPod(t, "lab", "lab-ns")
	podID := lab.RunPod(t, dock.Endpoint, pod)
	id := lab.StartContainer(t, dock.Endpoint, podID, pod, &lab.Container{
		Name: "sleeper", Command: []string{"sleep", "3600"},
	})
	got := lab.WaitContainerState(t, dock.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
	if got.Status.Metadata.Name != "sleeper" {
		t.Errorf("container name = %q, want sleeper", got.Status.Metadata.Name)
	}

	// Docker's view: the cgroup parent is the pod's, as cri-dockerd passed it on.
	parent := dock.DockerCLI(t, "inspect", "--format", "{{.HostConfig.CgroupParent}}", id)
	if parent != pod.CgroupParent() {
		t.Errorf("docker HostConfig.CgroupParent = %q, want %q", parent, pod.CgroupParent())
	}
	pidText := dock.DockerCLI(t, "inspect", "--format", "{{.State.Pid}}", id)
	var pid int
	lab.DecodeJSON(t, pidText, &pid)
	assertInCgroup(t, pid, "blkio", pod.CgroupParent()+"/"+id)

	out := lab.Crictl(t, dock.Endpoint, "exec", id, "echo", "from-docker")
	if out != "from-docker" {
		t.Errorf("exec output = %q, want from-docker", out)
	}
}

// assertInCgroup checks /proc/PID/cgroup: the process sits in cgroup want of the v1
// controller ctrl.
func assertInCgroup(t *testing.T, pid int, ctrl, want string) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid for the container (%d)", pid)
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatalf("read cgroup of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+ctrl+",") {
			if parts[2] != want {
				t.Errorf("pid %d %s cgroup = %q, want %q", pid, ctrl, parts[2], want)
			}
			return
		}
	}
	t.Errorf("pid %d has no %s cgroup in:\n%s", pid, ctrl, data)
}
