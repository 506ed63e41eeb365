//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// TestProxyCrictl drives real crictl through criguard's socket over the whole life of
// a pod, each step asserted on crictl's output.
func TestProxyCrictl(t *testing.T) {
	reg := lab.Registry(t)
	ctrd := lab.Containerd(t, lab.WithRegistry(reg))
	cg := lab.Criguard(t, ctrd.Endpoint)
	ep := cg.Endpoint

	t.Run("version", func(t *testing.T) {
		out := lab.Crictl(t, ep, "version")
		for _, want := range []string{"RuntimeName:  containerd", "RuntimeApiVersion:  v1"} {
			if !strings.Contains(out, want) {
				t.Errorf("version through criguard lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("info", func(t *testing.T) {
		var info struct {
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status bool   `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
			Config map[string]any `json:"config"`
		}
		lab.CrictlJSON(t, ep, &info, "info")
		ready := false
		for _, c := range info.Status.Conditions {
			ready = ready || (c.Type == "RuntimeReady" && c.Status)
		}
		if !ready {
			t.Errorf("info through criguard: no RuntimeReady=true condition in %+v", info.Status.Conditions)
		}
		if info.Config["sandboxImage"] != lab.PauseImage {
			t.Errorf("info config sandboxImage = %v, want %s (verbose info lost?)", info.Config["sandboxImage"], lab.PauseImage)
		}
	})

	const pulled = "criguard.test/e2e/pulled:v1"
	t.Run("pull", func(t *testing.T) {
		reg.Push(t, lab.ImageFile(t, "busybox.oci.tar"), pulled)
		out := lab.Crictl(t, ep, "pull", pulled)
		if !strings.Contains(out, "sha256:") {
			t.Errorf("pull output %q has no image ID", out)
		}
	})

	t.Run("images", func(t *testing.T) {
		tags := strings.Join(imageTags(t, ep), " ")
		for _, want := range []string{lab.BusyboxImage, lab.PauseImage, pulled} {
			if !strings.Contains(" "+tags+" ", " "+want+" ") {
				t.Errorf("images through criguard lack %s; have %s", want, tags)
			}
		}
	})

	pod := lab.NewPod(t, "crictl-pod", "e2e-proxy")
	pod.Labels = map[string]string{"app": "e2e"}
	pod.Annotations = map[string]string{"criguard.test/note": "through-proxy"}
	var podID, ctrID string
	t.Run("runp", func(t *testing.T) {
		podID = lab.Crictl(t, ep, "runp", lab.WritePodConfig(t, pod))
		var status struct {
			Status struct {
				State       string            `json:"state"`
				Annotations map[string]string `json:"annotations"`
			} `json:"status"`
		}
		lab.CrictlJSON(t, ep, &status, "inspectp", podID)
		if status.Status.State != "SANDBOX_READY" {
			t.Errorf("pod state = %q, want SANDBOX_READY", status.Status.State)
		}
		if status.Status.Annotations["criguard.test/note"] != "through-proxy" {
			t.Errorf("pod annotations = %v, want criguard.test/note=through-proxy", status.Status.Annotations)
		}
	})
	if podID == "" {
		t.Fatal("no pod: cannot go on")
	}
	t.Cleanup(func() { lab.RemovePodCgroup(t, pod) })

	ctr := &lab.Container{
		Name:    "talker",
		Image:   pulled,
		Command: []string{"sh", "-c", "echo hello-from-e2e; exec sleep 3600"},
		Labels:  map[string]string{"role": "talker"},
	}
	t.Run("create", func(t *testing.T) {
		ctrID = lab.CreateContainer(t, ep, podID, pod, ctr)
		got := lab.WaitContainerState(t, ep, ctrID, "CONTAINER_CREATED", 10*time.Second)
		if got.Status.Labels["role"] != "talker" {
			t.Errorf("container labels = %v, want role=talker", got.Status.Labels)
		}
	})
	if ctrID == "" {
		t.Fatal("no container: cannot go on")
	}

	t.Run("start", func(t *testing.T) {
		lab.Crictl(t, ep, "start", ctrID)
		lab.WaitContainerState(t, ep, ctrID, "CONTAINER_RUNNING", 30*time.Second)
	})

	t.Run("ps", func(t *testing.T) {
		ids := strings.Fields(lab.Crictl(t, ep, "ps", "-q", "--pod", podID))
		if len(ids) != 1 || ids[0] != ctrID {
			t.Errorf("ps -q --pod = %v, want [%s]", ids, ctrID)
		}
		table := lab.Crictl(t, ep, "ps", "--name", "talker")
		if !strings.Contains(table, "Running") || !strings.Contains(table, ctrID[:13]) {
			t.Errorf("ps table lacks the running container %s:\n%s", ctrID[:13], table)
		}
	})

	t.Run("inspect", func(t *testing.T) {
		got := lab.WaitContainerState(t, ep, ctrID, "CONTAINER_RUNNING", 5*time.Second)
		if got.Status.ID != ctrID || got.Status.Metadata.Name != "talker" {
			t.Errorf("inspect = id %q name %q, want %s talker", got.Status.ID, got.Status.Metadata.Name, ctrID)
		}
		if want := pod.CgroupParent() + "/" + ctrID; got.Info.RuntimeSpec.Linux.CgroupsPath != want {
			t.Errorf("inspect cgroupsPath = %q, want %q (verbose info must pass through)", got.Info.RuntimeSpec.Linux.CgroupsPath, want)
		}
		if got.Info.Pid <= 0 {
			t.Errorf("inspect info.pid = %d, want the container's pid", got.Info.Pid)
		}
	})

	t.Run("exec", func(t *testing.T) {
		// -s is ExecSync (unary); without it, Exec returns a streaming URL of containerd.
		if out := lab.Crictl(t, ep, "exec", "-s", ctrID, "echo", "exec-sync-ok"); out != "exec-sync-ok" {
			t.Errorf("exec -s output = %q, want exec-sync-ok", out)
		}
		if out := lab.Crictl(t, ep, "exec", ctrID, "sh", "-c", "echo exec-stream-ok"); out != "exec-stream-ok" {
			t.Errorf("exec output = %q, want exec-stream-ok", out)
		}
		if _, err := lab.CrictlErr(t, ep, "exec", "-s", ctrID, "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exited with 3") {
			t.Errorf("exec of a failing command: err = %v, want it to report exit code 3", err)
		}
	})

	t.Run("logs", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := lab.CrictlErr(t, ep, "logs", ctrID)
			if err == nil && strings.Contains(out, "hello-from-e2e") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("logs never showed hello-from-e2e: out %q err %v", out, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var stats struct {
			Stats []struct {
				Attributes struct {
					ID string `json:"id"`
				} `json:"attributes"`
				CPU struct {
					Timestamp string `json:"timestamp"`
				} `json:"cpu"`
				Memory struct {
					WorkingSetBytes struct {
						Value string `json:"value"`
					} `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"stats"`
		}
		lab.CrictlJSON(t, ep, &stats, "stats", "-o", "json", "--id", ctrID)
		if len(stats.Stats) != 1 || stats.Stats[0].Attributes.ID != ctrID {
			t.Fatalf("stats = %+v, want one entry for %s", stats.Stats, ctrID)
		}
		if stats.Stats[0].CPU.Timestamp == "" || stats.Stats[0].Memory.WorkingSetBytes.Value == "" {
			t.Errorf("stats for %s lack cpu or memory figures: %+v", ctrID, stats.Stats[0])
		}
	})

	t.Run("stop", func(t *testing.T) {
		lab.Crictl(t, ep, "stop", "--timeout", "2", ctrID)
		lab.WaitContainerState(t, ep, ctrID, "CONTAINER_EXITED", 10*time.Second)
	})

	t.Run("rm", func(t *testing.T) {
		lab.Crictl(t, ep, "rm", ctrID)
		_, err := lab.CrictlErr(t, ep, "inspect", ctrID)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not found") {
			t.Errorf("inspect after rm: err = %v, want not found", err)
		}
	})

	t.Run("stopp", func(t *testing.T) {
		lab.Crictl(t, ep, "stopp", podID)
		var status struct {
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		lab.CrictlJSON(t, ep, &status, "inspectp", podID)
		if status.Status.State != "SANDBOX_NOTREADY" {
			t.Errorf("pod state after stopp = %q, want SANDBOX_NOTREADY", status.Status.State)
		}
	})

	t.Run("rmp", func(t *testing.T) {
		lab.Crictl(t, ep, "rmp", podID)
		if ids := lab.Crictl(t, ep, "pods", "-q"); ids != "" {
			t.Errorf("pods after rmp = %q, want none", ids)
		}
	})

	t.Run("rmi", func(t *testing.T) {
		lab.Crictl(t, ep, "rmi", pulled)
		for _, tag := range imageTags(t, ep) {
			if tag == pulled {
				t.Errorf("image %s still listed after rmi", pulled)
			}
		}
	})
}

// imageTags lists every repo tag the image service reports.
func imageTags(t *testing.T, endpoint string) []string {
	t.Helper()
	var list struct {
		Images []struct {
			RepoTags []string `json:"repoTags"`
		} `json:"images"`
	}
	lab.CrictlJSON(t, endpoint, &list, "images", "-o", "json")
	var tags []string
	for _, img := range list.Images {
		tags = append(tags, img.RepoTags...)
	}
	return tags
}

// TestProxyMatchesDirect compares what crictl prints through criguard with what it
// prints against containerd itself: a client must not tell them apart.
func TestProxyMatchesDirect(t *testing.T) {
	ctrd := lab.Containerd(t)
	cg := lab.Criguard(t, ctrd.Endpoint)

	pod := lab.NewPod(t, "compare", "e2e-proxy")
	podID := lab.RunPod(t, ctrd.Endpoint, pod)
	for _, name := range []string{"one", "two"} {
		lab.StartContainer(t, ctrd.Endpoint, podID, pod, &lab.Container{Name: name, Command: []string{"sleep", "3600"}})
	}

	for _, args := range [][]string{
		{"version"},
		{"ps", "-a", "-o", "json"},
		{"pods", "-o", "json"},
		{"images", "-o", "json"},
		{"inspectp", podID},
	} {
		direct := lab.Crictl(t, ctrd.Endpoint, args...)
		proxied := lab.Crictl(t, cg.Endpoint, args...)
		if direct != proxied {
			t.Errorf("crictl %s differs through criguard:\ndirect:\n%s\nthrough criguard:\n%s", strings.Join(args, " "), direct, proxied)
		}
	}
	// The same error comes back for a container that does not exist.
	_, directErr := lab.CrictlErr(t, ctrd.Endpoint, "inspect", "does-not-exist")
	_, proxiedErr := lab.CrictlErr(t, cg.Endpoint, "inspect", "does-not-exist")
	if directErr == nil || proxiedErr == nil {
		t.Fatalf("inspect of a missing container: direct err %v, through criguard %v; want both to fail", directErr, proxiedErr)
	}
	if d, p := stderrOf(directErr), stderrOf(proxiedErr); d != p {
		t.Errorf("error differs through criguard:\ndirect:  %s\nproxied: %s", d, p)
	}
}

// stderrOf keeps the error crictl reports, without klog's time and pid prefix.
func stderrOf(err error) string {
	_, after, _ := strings.Cut(err.Error(), "stderr: ")
	if i := strings.Index(after, "err="); i >= 0 {
		after = after[i:]
	}
	// crictl's fatal line carries its own time, to the second: two runs may differ.
	return strings.TrimSpace(crictlTime.ReplaceAllString(after, `time="…"`))
}

var crictlTime = regexp.MustCompile(`time="[^"]*"`)

// TestProxyContainerEvents subscribes to GetContainerEvents through criguard with a Go
// client and expects the CONTAINER_STARTED event of a container started through it.
// Debian's containerd 1.6 does not implement the stream, so this runs containerd 2.
func TestProxyContainerEvents(t *testing.T) {
	ctrd := lab.Containerd(t, lab.WithContainerd2())
	cg := lab.Criguard(t, ctrd.Endpoint)
	client := lab.RuntimeClient(t, cg.Endpoint)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents through criguard: %v", err)
	}
	events := make(chan *runtimeapi.ContainerEventResponse, 64)
	streamErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				streamErr <- err
				return
			}
			events <- ev
		}
	}()

	pod := lab.NewPod(t, "events", "e2e-proxy")
	podID := lab.RunPod(t, cg.Endpoint, pod)
	id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "evented", Command: []string{"sleep", "3600"}})

	var seen []string
	for {
		select {
		case ev := <-events:
			seen = append(seen, ev.ContainerEventType.String()+" "+ev.ContainerId)
			if ev.ContainerId == id && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
				if ev.PodSandboxStatus == nil || ev.PodSandboxStatus.Id != podID {
					got, _ := json.Marshal(ev.PodSandboxStatus)
					t.Errorf("started event carries pod %s, want %s", got, podID)
				}
				cancel() // the client's cancel must end the stream
				select {
				case err := <-streamErr:
					if err == nil {
						t.Errorf("stream ended without an error after cancel")
					}
				case <-time.After(10 * time.Second):
					t.Errorf("stream still open 10s after the client cancelled")
				}
				return
			}
		case err := <-streamErr:
			t.Fatalf("event stream ended before CONTAINER_STARTED of %s: %v (seen %v)", id, err, seen)
		case <-ctx.Done():
			t.Fatalf("no CONTAINER_STARTED event for %s within 60s (seen %v)", id, seen)
		}
	}
}

// TestProxyContainerEventsUnimplemented: where the runtime lacks the event stream
// (containerd 1.6), the client gets the runtime's own status through criguard.
func TestProxyContainerEventsUnimplemented(t *testing.T) {
	ctrd := lab.Containerd(t)
	cg := lab.Criguard(t, ctrd.Endpoint)

	recvStatus := func(endpoint string) *status.Status {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := lab.RuntimeClient(t, endpoint).GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			t.Fatalf("GetContainerEvents on %s delivered an event; containerd 1.6 has none", endpoint)
		}
		return status.Convert(err)
	}
	direct, proxied := recvStatus(ctrd.Endpoint), recvStatus(cg.Endpoint)
	if direct.Code() != codes.Unimplemented {
		t.Fatalf("direct GetContainerEvents: %v, want Unimplemented from containerd 1.6", direct)
	}
	if proxied.Code() != direct.Code() || proxied.Message() != direct.Message() {
		t.Errorf("through criguard: %v %q, want the runtime's %v %q", proxied.Code(), proxied.Message(), direct.Code(), direct.Message())
	}
}

// TestProxyDocker drives cri-dockerd through criguard: the same crictl calls behave as
// they do on cri-dockerd's own socket.
func TestProxyDocker(t *testing.T) {
	dock := lab.Docker(t)
	cg := lab.Criguard(t, dock.Endpoint)
	ep := cg.Endpoint

	pod := lab.NewPod(t, "docker-pod", "e2e-proxy")
	podID := lab.RunPod(t, ep, pod)
	id := lab.StartContainer(t, ep, podID, pod, &lab.Container{
		Name: "talker", Command: []string{"sh", "-c", "echo hello-from-docker; exec sleep 3600"},
	})
	got := lab.WaitContainerState(t, ep, id, "CONTAINER_RUNNING", 30*time.Second)
	if got.Status.Metadata.Name != "talker" {
		t.Errorf("inspect through criguard: name %q, want talker", got.Status.Metadata.Name)
	}
	if out := lab.Crictl(t, ep, "exec", "-s", id, "echo", "exec-docker-ok"); out != "exec-docker-ok" {
		t.Errorf("exec -s through criguard = %q, want exec-docker-ok", out)
	}
	if out := lab.Crictl(t, ep, "exec", id, "echo", "stream-docker-ok"); out != "stream-docker-ok" {
		t.Errorf("exec through criguard = %q, want stream-docker-ok", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := lab.CrictlErr(t, ep, "logs", id)
		if err == nil && strings.Contains(out, "hello-from-docker") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs through criguard never showed hello-from-docker: out %q err %v", out, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, args := range [][]string{{"version"}, {"ps", "-a", "-o", "json"}, {"pods", "-o", "json"}, {"inspect", id}} {
		direct := lab.Crictl(t, dock.Endpoint, args...)
		proxied := lab.Crictl(t, ep, args...)
		if direct != proxied {
			t.Errorf("crictl %s differs through criguard:\ndirect:\n%s\nthrough criguard:\n%s", strings.Join(args, " "), direct, proxied)
		}
	}
	lab.Crictl(t, ep, "stop", "--timeout", "2", id)
	lab.WaitContainerState(t, ep, id, "CONTAINER_EXITED", 15*time.Second)
	lab.Crictl(t, ep, "rm", id)
}
