package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CrictlErr runs the lab's crictl against endpoint (runtime and image service alike)
// and returns its stdout; the error carries the command line and stderr.
func CrictlErr(t testing.TB, endpoint string, args ...string) (string, error) {
	t.Helper()
	argv := append([]string{Bin(t, "crictl"),
		"--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
		"--timeout", "60s", "--config", "/dev/null"}, args...)
	return run(context.Background(), argv...)
}

// Crictl is CrictlErr that fails the test on error, and trims the output (IDs come
// back ready to use).
func Crictl(t testing.TB, endpoint string, args ...string) string {
	t.Helper()
	out, err := CrictlErr(t, endpoint, args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return strings.TrimSpace(out)
}

// CrictlJSON runs crictl and decodes its JSON output into v; the args must ask for
// JSON (inspect does by default, ps/pods/images/version need "-o", "json").
func CrictlJSON(t testing.TB, endpoint string, v any, args ...string) {
	t.Helper()
	DecodeJSON(t, Crictl(t, endpoint, args...), v)
}

// DecodeJSON decodes s into v, failing the test with the text when it is not JSON.
func DecodeJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("lab: decode JSON %.500q: %v", s, err)
	}
}

// QoS is a pod's Kubernetes QoS class, which decides its cgroup parent.
type QoS string

// The QoS classes as kubelet names their cgroups.
const (
	Guaranteed QoS = "guaranteed"
	Burstable  QoS = "burstable"
	BestEffort QoS = "besteffort"
)

// Pod describes a pod sandbox as kubelet would create it with the cgroupfs driver.
// Pods use the host's network unless Network is set, so that no CNI is needed.
type Pod struct {
	Name, Namespace string
	// UID is the pod UID; NewPod makes a random one.
	UID string
	// QoS decides the cgroup parent; empty means Burstable.
	QoS         QoS
	Labels      map[string]string
	Annotations map[string]string
	// PodNetwork asks for a pod network namespace (needs WithCNI) instead of the host's.
	PodNetwork bool
	// LogDirectory holds the containers' logs; NewPod makes one under the test's temp dir.
	LogDirectory string
	// RuntimeHandler is RunPodSandbox's runtime_handler (a RuntimeClass's handler, e.g.
	// crun); empty is the runtime's default.
	RuntimeHandler string
}

// NewPod returns a burstable host-network pod with a random UID and its own log dir.
func NewPod(t testing.TB, name, namespace string) *Pod {
	t.Helper()
	return &Pod{
		Name:         name,
		Namespace:    namespace,
		UID:          randomID(8),
		QoS:          Burstable,
		LogDirectory: t.TempDir(),
	}
}

// CgroupParent is the pod's cgroup under kubelet's cgroupfs driver:
// /kubepods/pod<uid> for guaranteed pods, /kubepods/<qos>/pod<uid> otherwise.
func (p *Pod) CgroupParent() string {
	switch p.QoS {
	case Guaranteed:
		return "/kubepods/pod" + p.UID
	case "":
		return "/kubepods/" + string(Burstable) + "/pod" + p.UID
	}
	return "/kubepods/" + string(p.QoS) + "/pod" + p.UID
}

// Config is the CRI PodSandboxConfig for the pod. The pod's cgroup is remembered and
// removed once empty, when its pod or its runtime is cleaned up.
func (p *Pod) Config() *runtimeapi.PodSandboxConfig {
	trackCgroup(p.CgroupParent())
	network := runtimeapi.NamespaceMode_NODE
	if p.PodNetwork {
		network = runtimeapi.NamespaceMode_POD
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID},
		Labels:       p.Labels,
		Annotations:  p.Annotations,
		LogDirectory: p.LogDirectory,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: p.CgroupParent(),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: network},
			},
		},
	}
}

// Container describes a container of a pod.
type Container struct {
	Name string
	// Image defaults to BusyboxImage.
	Image string
	// Command and Args override the image's entrypoint and command.
	Command, Args []string
	Labels        map[string]string
	Annotations   map[string]string
	// Mounts bind host paths into the container.
	Mounts []*runtimeapi.Mount
}

// Config is the CRI ContainerConfig; the log goes to <pod log dir>/<name>.log.
func (c *Container) Config() *runtimeapi.ContainerConfig {
	image := c.Image
	if image == "" {
		image = BusyboxImage
	}
	return &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Name},
		Image:       &runtimeapi.ImageSpec{Image: image},
		Command:     c.Command,
		Args:        c.Args,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Mounts:      c.Mounts,
		LogPath:     c.Name + ".log",
	}
}

// WritePodConfig writes the pod's config as crictl reads it and returns the path.
func WritePodConfig(t testing.TB, p *Pod) string {
	t.Helper()
	return writeJSON(t, "pod-"+p.Name+".json", p.Config())
}

// WriteContainerConfig writes the container's config as crictl reads it and returns
// the path.
func WriteContainerConfig(t testing.TB, c *Container) string {
	t.Helper()
	return writeJSON(t, "container-"+c.Name+".json", c.Config())
}

// writeJSON relies on the CRI types' JSON tags, which are the snake_case field names
// crictl expects (namespace_options, cgroup_parent …).
func writeJSON(t testing.TB, name string, v any) string {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("lab: encode %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("lab: write %s: %v", path, err)
	}
	return path
}

// RunPod runs the pod through crictl and returns its sandbox ID. A cleanup stops and
// removes it and removes its pod cgroup, as kubelet would.
func RunPod(t testing.TB, endpoint string, p *Pod) string {
	t.Helper()
	args := []string{"runp", WritePodConfig(t, p)}
	if p.RuntimeHandler != "" {
		args = []string{"runp", "--runtime", p.RuntimeHandler, WritePodConfig(t, p)}
	}
	id := Crictl(t, endpoint, args...)
	t.Cleanup(func() {
		if _, err := CrictlErr(t, endpoint, "stopp", id); err != nil {
			t.Logf("lab: cleanup stopp %s: %v", id, err)
		}
		if _, err := CrictlErr(t, endpoint, "rmp", "-f", id); err != nil {
			t.Logf("lab: cleanup rmp %s: %v", id, err)
		}
		RemovePodCgroup(t, p)
	})
	return id
}

// RemovePodCgroup removes the pod's cgroup dirs once its containers are gone. A cgroup
// still busy (the pod outlived the endpoint that made it) is tried again when its
// runtime stops.
func RemovePodCgroup(t testing.TB, p *Pod) {
	t.Helper()
	if err := removeCgroup(p.CgroupParent()); err == nil {
		untrackCgroup(p.CgroupParent())
	}
}

// CreateContainer creates the container in the pod and returns its ID.
func CreateContainer(t testing.TB, endpoint, podID string, p *Pod, c *Container) string {
	t.Helper()
	return Crictl(t, endpoint, "create", podID, WriteContainerConfig(t, c), WritePodConfig(t, p))
}

// StartContainer creates and starts the container in the pod and returns its ID.
func StartContainer(t testing.TB, endpoint, podID string, p *Pod, c *Container) string {
	t.Helper()
	id := CreateContainer(t, endpoint, podID, p, c)
	Crictl(t, endpoint, "start", id)
	return id
}

// WaitContainerState polls until the container reaches state (CONTAINER_RUNNING,
// CONTAINER_EXITED …) or timeout, and returns the last inspect output.
func WaitContainerState(t testing.TB, endpoint, id, state string, timeout time.Duration) *ContainerInspect {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got ContainerInspect
		CrictlJSON(t, endpoint, &got, "inspect", id)
		if got.Status.State == state {
			return &got
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: container %s is %s after %s, want %s", id, got.Status.State, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ContainerInspect is the part of `crictl inspect` output that tests read.
type ContainerInspect struct {
	Status struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		ExitCode int32  `json:"exitCode"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Image struct {
			Image string `json:"image"`
		} `json:"image"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		LogPath     string            `json:"logPath"`
	} `json:"status"`
	Info struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	} `json:"info"`
}

// Dial connects a gRPC client to a CRI endpoint (unix://…) and closes it at cleanup.
func Dial(t testing.TB, endpoint string) *grpc.ClientConn {
	t.Helper()
	if !strings.HasPrefix(endpoint, "unix://") {
		t.Fatalf("lab: endpoint %q is not unix://", endpoint)
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("lab: dial %s: %v", endpoint, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// RuntimeClient is a CRI RuntimeService client for endpoint.
func RuntimeClient(t testing.TB, endpoint string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	return runtimeapi.NewRuntimeServiceClient(Dial(t, endpoint))
}

// ImageClient is a CRI ImageService client for endpoint.
func ImageClient(t testing.TB, endpoint string) runtimeapi.ImageServiceClient {
	t.Helper()
	return runtimeapi.NewImageServiceClient(Dial(t, endpoint))
}

// String gives the pod's namespace/name in messages.
func (p *Pod) String() string { return fmt.Sprintf("%s/%s", p.Namespace, p.Name) }

// ContainerCgroup is the cgroup, relative to a controller's mount, of container id in
// pod p under the cgroupfs driver, as the runtime behind endpoint names it (asked by
// Version, not by the container's own status): <parent>/crio-<id> on CRI-O,
// <parent>/<id> on containerd and Docker.
func ContainerCgroup(t testing.TB, endpoint string, p *Pod, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	v, err := RuntimeClient(t, endpoint).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("lab: Version of %s: %v", endpoint, err)
	}
	if v.RuntimeName == "cri-o" {
		return p.CgroupParent() + "/crio-" + id
	}
	return p.CgroupParent() + "/" + id
}
