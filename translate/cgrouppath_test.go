package translate

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

const (
	containerID = "6b2c1d7e9f0a4b3c8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c"
	podUID      = "3f2e1c9a-7b4d-4e8f-9a0b-1c2d3e4f5a6b"
	podUIDsd    = "3f2e1c9a_7b4d_4e8f_9a0b_1c2d3e4f5a6b" // systemd escapes "-" as "_"
)

// Mounts the blkio/io hierarchy is found at: v1 and hybrid (blkio), v2, and
// an unusual cgroup2 mount point.
var mounts = []string{"/sys/fs/cgroup/blkio", "/sys/fs/cgroup", "/run/cg"}

func TestCgroupDir(t *testing.T) {
	tests := []struct {
		name        string
		cgroupsPath string
		rel         string // expected directory relative to the mount
		qos         string // QoSFromCgroupParent of the pod's parent
		parent      string
	}{
		// systemd driver: containerd, CRI-O, Docker (through cri-dockerd).
		{"systemd/besteffort/containerd",
			"kubepods-besteffort-pod" + podUIDsd + ".slice:cri-containerd:" + containerID,
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDsd + ".slice/cri-containerd-" + containerID + ".scope",
			QoSBestEffort, "kubepods-besteffort-pod" + podUIDsd + ".slice"},
		{"systemd/burstable/containerd",
			"kubepods-burstable-pod" + podUIDsd + ".slice:cri-containerd:" + containerID,
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDsd + ".slice/cri-containerd-" + containerID + ".scope",
			QoSBurstable, "kubepods-burstable-pod" + podUIDsd + ".slice"},
		{"systemd/guaranteed/containerd",
			"kubepods-pod" + podUIDsd + ".slice:cri-containerd:" + containerID,
			"kubepods.slice/kubepods-pod" + podUIDsd + ".slice/cri-containerd-" + containerID + ".scope",
			QoSGuaranteed, "kubepods-pod" + podUIDsd + ".slice"},
		{"systemd/besteffort/crio",
			"kubepods-besteffort-pod" + podUIDsd + ".slice:crio:" + containerID,
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDsd + ".slice/crio-" + containerID + ".scope",
			QoSBestEffort, "kubepods-besteffort-pod" + podUIDsd + ".slice"},
		{"systemd/burstable/crio",
			"kubepods-burstable-pod" + podUIDsd + ".slice:crio:" + containerID,
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDsd + ".slice/crio-" + containerID + ".scope",
			QoSBurstable, "kubepods-burstable-pod" + podUIDsd + ".slice"},
		{"systemd/guaranteed/crio",
			"kubepods-pod" + podUIDsd + ".slice:crio:" + containerID,
			"kubepods.slice/kubepods-pod" + podUIDsd + ".slice/crio-" + containerID + ".scope",
			QoSGuaranteed, "kubepods-pod" + podUIDsd + ".slice"},
		{"systemd/besteffort/docker",
			DockerCgroupsPath("kubepods-besteffort-pod"+podUIDsd+".slice", containerID, true),
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDsd + ".slice/docker-" + containerID + ".scope",
			QoSBestEffort, "kubepods-besteffort-pod" + podUIDsd + ".slice"},
		{"systemd/burstable/docker",
			DockerCgroupsPath("kubepods-burstable-pod"+podUIDsd+".slice", containerID, true),
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDsd + ".slice/docker-" + containerID + ".scope",
			QoSBurstable, "kubepods-burstable-pod" + podUIDsd + ".slice"},
		{"systemd/guaranteed/docker",
			DockerCgroupsPath("kubepods-pod"+podUIDsd+".slice", containerID, true),
			"kubepods.slice/kubepods-pod" + podUIDsd + ".slice/docker-" + containerID + ".scope",
			QoSGuaranteed, "kubepods-pod" + podUIDsd + ".slice"},
		// A kubelet with --cgroup-root=/kubelet: the root slice is kubelet.slice.
		{"systemd/kubelet-kubepods/burstable/containerd",
			"kubelet-kubepods-burstable-pod" + podUIDsd + ".slice:cri-containerd:" + containerID,
			"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + podUIDsd + ".slice/cri-containerd-" + containerID + ".scope",
			QoSBurstable, "kubelet-kubepods-burstable-pod" + podUIDsd + ".slice"},
		{"systemd/kubelet-kubepods/guaranteed/crio",
			"kubelet-kubepods-pod" + podUIDsd + ".slice:crio:" + containerID,
			"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + podUIDsd + ".slice/crio-" + containerID + ".scope",
			QoSGuaranteed, "kubelet-kubepods-pod" + podUIDsd + ".slice"},
		// Docker without kubelet, and runc's defaults.
		{"systemd/docker/no-parent", DockerCgroupsPath("", containerID, true), "system.slice/docker-" + containerID + ".scope", "", ""},
		{"systemd/empty-slice", ":cri-containerd:" + containerID, "system.slice/cri-containerd-" + containerID + ".scope", "", ""},
		{"systemd/root-slice", "-.slice:crio:" + containerID, "crio-" + containerID + ".scope", "", "-.slice"},
		{"systemd/name-is-slice", "kubepods.slice:crio:extra.slice", "kubepods.slice/extra.slice", "", "kubepods.slice"},

		// cgroupfs driver.
		{"cgroupfs/besteffort/containerd", "/kubepods/besteffort/pod" + podUID + "/" + containerID,
			"kubepods/besteffort/pod" + podUID + "/" + containerID, QoSBestEffort, "/kubepods/besteffort/pod" + podUID},
		{"cgroupfs/burstable/containerd", "/kubepods/burstable/pod" + podUID + "/" + containerID,
			"kubepods/burstable/pod" + podUID + "/" + containerID, QoSBurstable, "/kubepods/burstable/pod" + podUID},
		{"cgroupfs/guaranteed/containerd", "/kubepods/pod" + podUID + "/" + containerID,
			"kubepods/pod" + podUID + "/" + containerID, QoSGuaranteed, "/kubepods/pod" + podUID},
		{"cgroupfs/besteffort/crio", "/kubepods/besteffort/pod" + podUID + "/crio-" + containerID,
			"kubepods/besteffort/pod" + podUID + "/crio-" + containerID, QoSBestEffort, "/kubepods/besteffort/pod" + podUID},
		{"cgroupfs/burstable/crio", "/kubepods/burstable/pod" + podUID + "/crio-" + containerID,
			"kubepods/burstable/pod" + podUID + "/crio-" + containerID, QoSBurstable, "/kubepods/burstable/pod" + podUID},
		{"cgroupfs/guaranteed/crio", "/kubepods/pod" + podUID + "/crio-" + containerID,
			"kubepods/pod" + podUID + "/crio-" + containerID, QoSGuaranteed, "/kubepods/pod" + podUID},
		{"cgroupfs/besteffort/docker", DockerCgroupsPath("/kubepods/besteffort/pod"+podUID, containerID, false),
			"kubepods/besteffort/pod" + podUID + "/" + containerID, QoSBestEffort, "/kubepods/besteffort/pod" + podUID},
		{"cgroupfs/burstable/docker", DockerCgroupsPath("/kubepods/burstable/pod"+podUID, containerID, false),
			"kubepods/burstable/pod" + podUID + "/" + containerID, QoSBurstable, "/kubepods/burstable/pod" + podUID},
		{"cgroupfs/guaranteed/docker", DockerCgroupsPath("/kubepods/pod"+podUID, containerID, false),
			"kubepods/pod" + podUID + "/" + containerID, QoSGuaranteed, "/kubepods/pod" + podUID},
		{"cgroupfs/kubelet-root/burstable", "/kubelet/kubepods/burstable/pod" + podUID + "/" + containerID,
			"kubelet/kubepods/burstable/pod" + podUID + "/" + containerID, QoSBurstable, "/kubelet/kubepods/burstable/pod" + podUID},
		{"cgroupfs/docker/no-parent", DockerCgroupsPath("", containerID, false), "docker/" + containerID, "", ""},
		{"cgroupfs/containerd/no-parent", "/k8s.io/" + containerID, "k8s.io/" + containerID, "", ""},
	}
	for _, tt := range tests {
		for _, mount := range mounts {
			t.Run(tt.name+mount, func(t *testing.T) {
				got, err := CgroupDir(mount, tt.cgroupsPath)
				if want := filepath.Join(mount, tt.rel); err != nil || got != want {
					t.Errorf("CgroupDir(%q, %q) = %q, %v; want %q", mount, tt.cgroupsPath, got, err, want)
				}
				if tt.parent == "" {
					return
				}
				podDir, err := PodCgroupDir(mount, tt.parent)
				if err != nil || podDir != filepath.Dir(got) {
					t.Errorf("PodCgroupDir(%q, %q) = %q, %v; want the container's parent %q", mount, tt.parent, podDir, err, filepath.Dir(got))
				}
			})
		}
		if tt.parent != "" {
			if got := QoSFromCgroupParent(tt.parent); got != tt.qos {
				t.Errorf("QoSFromCgroupParent(%q) = %q, want %q", tt.parent, got, tt.qos)
			}
		}
	}
}

func TestCgroupDirRejects(t *testing.T) {
	for _, cgroupsPath := range []string{
		"",
		"relative/path",
		"a:b",
		"a:b:c:d",
		"/kubepods/../../etc",
		"/..",
		"kubepods-.slice:crio:" + containerID,  // empty slice component
		"kubepods:crio:" + containerID,         // not a slice
		"kubepods/x.slice:crio:" + containerID, // slash in slice
		"kubepods.slice:crio:../../../etc",     // slash in name
		"kubepods.slice:cr/io:x",
		"kubepods.slice:crio:",
	} {
		if got, err := CgroupDir("/sys/fs/cgroup", cgroupsPath); !errors.Is(err, ErrInvalidCgroupsPath) {
			t.Errorf("CgroupDir(%q) = %q, %v; want ErrInvalidCgroupsPath", cgroupsPath, got, err)
		}
	}
	if _, err := CgroupDir("/sys/fs/cgroup", "/a/../b"); !errors.Is(err, cgroup.ErrPathEscape) {
		t.Errorf("CgroupDir(..) error = %v, want it to wrap cgroup.ErrPathEscape", err)
	}
	for _, parent := range []string{"", "kubepods", "kubepods--x.slice", "/kubepods/../..", "a/b.slice"} {
		if got, err := PodCgroupDir("/sys/fs/cgroup", parent); !errors.Is(err, ErrInvalidCgroupParent) {
			t.Errorf("PodCgroupDir(%q) = %q, %v; want ErrInvalidCgroupParent", parent, got, err)
		}
	}
}

func TestQoSFromCgroupParentUnknown(t *testing.T) {
	for _, parent := range []string{"", "/", "/kubepods", "kubepods.slice", "/docker", "system.slice",
		"/kubepods/burstable", "kubepods-besteffort.slice", "/kubepods/other/pod1", "/mykubepods/pod1"} {
		if got := QoSFromCgroupParent(parent); got != "" {
			t.Errorf("QoSFromCgroupParent(%q) = %q, want \"\"", parent, got)
		}
	}
}

func FuzzCgroupDir(f *testing.F) {
	f.Add("/sys/fs/cgroup", "kubepods-burstable-pod1.slice:cri-containerd:abc")
	f.Add("/sys/fs/cgroup/blkio", "/kubepods/burstable/pod1/abc")
	f.Add("/run/cg", ":crio:x")
	f.Add("/", "-.slice:docker:..")
	f.Fuzz(func(t *testing.T, mount, cgroupsPath string) {
		for _, dir := range []func() (string, error){
			func() (string, error) { return CgroupDir(mount, cgroupsPath) },
			func() (string, error) { return PodCgroupDir(mount, cgroupsPath) },
		} {
			got, err := dir()
			if err != nil {
				continue
			}
			clean := filepath.Clean(mount)
			if rel, err := filepath.Rel(clean, got); err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
				t.Errorf("%q under %q gave %q, outside the mount", cgroupsPath, mount, got)
			}
		}
		_ = QoSFromCgroupParent(cgroupsPath)
	})
}
