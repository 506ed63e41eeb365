//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/test/e2e/lab"
)

// resourcesPolicy caps processes in pids-* namespaces, gives the container named
// "low" in cpu-* namespaces a fifth of a default CPU share, and asks a soft memory
// ceiling (v2 only) in memory-* namespaces.
const resourcesPolicy = `
class "few-pids" {
  pids {
    max = 20
  }
}

class "soft-memory" {
  memory {
    high = "64MiB"
  }
}

class "low-cpu" {
  cpu {
    weight = 20
    max    = "250m" # above what it gets under contention: the weight decides
  }
}

rule "pids" {
  match {
    namespaces = ["pids-*"]
  }
  class = "few-pids"
}

rule "memory" {
  match {
    namespaces = ["memory-*"]
  }
  class = "soft-memory"
}

rule "cpu" {
  match {
    namespaces = ["cpu-*"]
    containers = ["low"]
  }
  class = "low-cpu"
}
`

// controllerDir is a container's or pod's cgroup under a v1 controller's mount.
func controllerDir(t *testing.T, controller, rel string) string {
	t.Helper()
	h, err := cgroup.DetectHost("")
	if err != nil {
		t.Fatal(err)
	}
	mount, ok := h.ControllerMount(controller)
	if !ok {
		t.Skipf("no v1 %s controller on this host (the v2 VM proves it)", controller)
	}
	return filepath.Join(mount, filepath.Clean("/"+rel))
}

func readCgroupNumber(t *testing.T, dir, file string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, file, err)
	}
	return n
}

// startWithResources creates and starts a container whose CRI config carries
// resources, as kubelet sends them.
func startWithResources(t *testing.T, endpoint, podID string, pod *lab.Pod, c *lab.Container, res *runtimeapi.LinuxContainerResources) string {
	t.Helper()
	cfg := c.Config()
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: res}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "container-"+c.Name+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	id := lab.Crictl(t, endpoint, "create", podID, path, lab.WritePodConfig(t, pod))
	lab.Crictl(t, endpoint, "start", id)
	lab.WaitContainerState(t, endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
	return id
}

// resourcesRuntimes are the runtimes the resources tests run on, each through
// resourcesRuntime; CRI-O on its default handler, runc.
var resourcesRuntimes = []string{"containerd", "crio", "docker"}

// A pids.max = 20 container cannot start a 21st process, on every runtime: on v1 CRI
// carries no pids limit, so criguard writes pids.max before start.
func TestResourcesPidsMax(t *testing.T) {
	for _, rt := range resourcesRuntimes {
		t.Run(rt, func(t *testing.T) {
			endpoint, args := resourcesRuntime(t, rt)
			policyPath := newPolicyFile(t, resourcesPolicy)
			cg := lab.Criguard(t, endpoint, append(args, "--policy", policyPath)...)
			pod := lab.NewPod(t, "forker", "pids-"+rt)
			podID := lab.RunPod(t, cg.Endpoint, pod)
			// Its first instruction prints the limit it runs under.
			id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "forker",
				Command: []string{"sh", "-c", "echo first-pids-max=$(cat /sys/fs/cgroup/pids/pids.max); trap 'exit 0' TERM; sleep 3600 & wait"}})
			lab.WaitContainerState(t, cg.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
			if logs := waitContainerLog(t, cg.Endpoint, id, "first-pids-max="); !strings.Contains(logs, "first-pids-max=20") {
				t.Fatalf("the container's first instruction saw %q, want pids.max 20 in place before it ran%s", logs, criguardLog(cg))
			}
			dir := controllerDir(t, "pids", lab.ContainerCgroup(t, cg.Endpoint, pod, id))
			if got := readCgroupNumber(t, dir, "pids.max"); got != 20 {
				t.Fatalf("pids.max = %d, want 20%s", got, criguardLog(cg))
			}
			if log := cg.Log(400); strings.Contains(log, "not in force after start") {
				t.Errorf("the read-back after start found a setting not in force:%s", criguardLog(cg))
			}
			// explain and status read it back, with the daemon's own flags.
			flags := append([]string{"--runtime-endpoint", endpoint, "--policy", policyPath}, args...)
			if text := criguardCLI(t, append(append([]string{"explain"}, flags...), id)...); !strings.Contains(text, "pids.max wanted 20, in force 20 (in sync)") {
				t.Errorf("explain does not show pids.max in sync:\n%s", text)
			}
			var reports []criservice.Report
			lab.DecodeJSON(t, criguardCLI(t, append([]string{"status", "-o", "json"}, flags...)...), &reports)
			for _, r := range reports {
				if r.ID == id && (!r.Match || len(r.Resources) != 1 || r.Resources[0].Have != "20") {
					t.Errorf("status of the capped container = %+v", r)
				}
			}
			// 40 long sleeps from an exec (their output detached, so that the exec ends):
			// the container holds sh and sleep, the exec its shell; the kernel refuses the
			// fork that would make a 21st task and counts it in pids.events.
			out, err := lab.CrictlErr(t, cg.Endpoint, "exec", "-s", id, "sh", "-c",
				"for i in $(seq 40); do sleep 3600 </dev/null >/dev/null 2>&1 & done; echo forks-done")
			current := readCgroupNumber(t, dir, "pids.current")
			refused := pidsEventsMax(t, dir)
			// busybox sh exits when its fork is refused: the exec fails, its sleeps stay.
			t.Logf("%s: after 40 forks: pids.current = %d, forks refused at pids.max (pids.events max) = %d; exec output %q, failed: %v", rt, current, refused, lastLines(out, 1), err != nil)
			if current < 19 || current > 20 || refused == 0 {
				t.Fatalf("pids.current = %d and %d refused forks: want the container held at 20 tasks%s", current, refused, criguardLog(cg))
			}
		})
	}
}

// pidsEventsMax is how many forks the kernel refused because of pids.max.
func pidsEventsMax(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pids.events"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if value, ok := strings.CutPrefix(line, "max "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
			return n
		}
	}
	return 0
}

// A CPU-weight class gets less CPU than an unthrottled neighbour under contention:
// two busy containers of one pod pinned to one CPU, the "low" one with weight 20
// (its cpu.shares on v1), the other with kubelet's 1024 for one CPU.
func TestResourcesCPUWeight(t *testing.T) {
	for _, rt := range resourcesRuntimes {
		t.Run(rt, func(t *testing.T) {
			endpoint, args := resourcesRuntime(t, rt)
			cg := lab.Criguard(t, endpoint, append(args, "--policy", newPolicyFile(t, resourcesPolicy))...)
			pod := lab.NewPod(t, "spinners", "cpu-"+rt)
			podID := lab.RunPod(t, cg.Endpoint, pod)
			busy := []string{"sh", "-c", "trap 'exit 0' TERM; while :; do :; done"}
			kubelets := func() *runtimeapi.LinuxContainerResources {
				return &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpusetCpus: "0"}
			}
			low := startWithResources(t, cg.Endpoint, podID, pod, &lab.Container{Name: "low", Command: busy}, kubelets())
			high := startWithResources(t, cg.Endpoint, podID, pod, &lab.Container{Name: "high", Command: busy}, kubelets())
			lowCgroup, highCgroup := lab.ContainerCgroup(t, cg.Endpoint, pod, low), lab.ContainerCgroup(t, cg.Endpoint, pod, high)
			lowDir, highDir := controllerDir(t, "cpu", lowCgroup), controllerDir(t, "cpu", highCgroup)
			want := cgroup.CPUSharesFromWeight(20)
			if got := readCgroupNumber(t, lowDir, "cpu.shares"); got != want {
				t.Fatalf("low cpu.shares = %d, want %d (weight 20)%s", got, want, criguardLog(cg))
			}
			if got := readCgroupNumber(t, lowDir, "cpu.cfs_quota_us"); got != 25000 {
				t.Fatalf("low cpu.cfs_quota_us = %d, want 25000 (max 250m over 100 ms)%s", got, criguardLog(cg))
			}
			if log := cg.Log(400); strings.Contains(log, "not in force after start") {
				t.Errorf("the read-back after start found a setting not in force:%s", criguardLog(cg))
			}
			if got := readCgroupNumber(t, highDir, "cpu.shares"); got != 1024 {
				t.Fatalf("neighbour cpu.shares = %d, want kubelet's 1024", got)
			}
			usage := func() (uint64, uint64) {
				return readCgroupNumber(t, controllerDir(t, "cpuacct", lowCgroup), "cpuacct.usage"),
					readCgroupNumber(t, controllerDir(t, "cpuacct", highCgroup), "cpuacct.usage")
			}
			// The host is shared with other builds: sample until the pair has had 1.5 s
			// of CPU 0 between them (at most 30 s), then compare their split.
			l0, h0 := usage()
			start := time.Now()
			l1, h1 := usage()
			for (l1-l0)+(h1-h0) < 15e8 && time.Since(start) < 30*time.Second {
				time.Sleep(time.Second)
				l1, h1 = usage()
			}
			ratio := float64(l1-l0) / float64(h1-h0)
			t.Logf("%s: %.0f s pinned to one CPU: low (weight 20, shares %d) %.2fs CPU, neighbour (shares 1024) %.2fs CPU, ratio %.3f (shares ratio %.3f)",
				rt, time.Since(start).Seconds(), want, float64(l1-l0)/1e9, float64(h1-h0)/1e9, ratio, float64(want)/1024)
			// The host is shared: what matters is the split of the CPU they both got.
			if h1-h0 < 5e8 || ratio > 0.35 || l1 == l0 {
				t.Fatalf("low/neighbour CPU ratio %.3f (neighbour %.2fs): want the low class well below its neighbour and not starved%s",
					ratio, float64(h1-h0)/1e9, criguardLog(cg))
			}
		})
	}
}

// A memory.high class on cgroup v1, which has no soft ceiling, is never dropped
// silently: check --host refuses it, the container still runs, criguard logs why at
// create, and explain and status report it as not enforced.
func TestResourcesMemoryHighV1(t *testing.T) {
	h, err := cgroup.DetectHost("")
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode() == cgroup.ModeV2 {
		t.Skip("cgroup v2 host: memory.high is enforceable there, through CreateContainer's unified resources")
	}
	policyPath := newPolicyFile(t, resourcesPolicy)
	check := exec.Command(os.Getenv("CRIGUARD_BIN"), "check", "--host", policyPath)
	out, err := check.CombinedOutput()
	if want := `class "soft-memory": this host cannot enforce memory.high`; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("check --host = %v, %q; want a failure with %q", err, out, want)
	}
	for _, rt := range resourcesRuntimes {
		t.Run(rt, func(t *testing.T) {
			endpoint, args := resourcesRuntime(t, rt)
			cg := lab.Criguard(t, endpoint, append(args, "--policy", policyPath)...)
			pod := lab.NewPod(t, "soft", "memory-"+rt)
			podID := lab.RunPod(t, cg.Endpoint, pod)
			id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "soft",
				Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}})
			lab.WaitContainerState(t, cg.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
			log := cg.Log(400)
			loggedAtCreate := slices.ContainsFunc(strings.Split(log, "\n"), func(line string) bool {
				return strings.Contains(line, `msg="throttle not enforceable on this host" pod=memory-`+rt+"/soft") &&
					strings.Contains(line, `why="memory.high: cgroup v1 has no soft memory ceiling`)
			})
			if !loggedAtCreate {
				t.Errorf("criguard did not log at create that memory.high is not enforceable:%s", criguardLog(cg))
			}
			if strings.Contains(log, "not in force after start") {
				t.Errorf("the read-back after start took an unenforceable setting for a failed one:%s", criguardLog(cg))
			}
			flags := append([]string{"--runtime-endpoint", endpoint, "--policy", policyPath}, args...)
			text := criguardCLI(t, append(append([]string{"explain"}, flags...), id)...)
			for _, want := range []string{
				"memory.high wanted 64MiB, in force - (not enforced: cgroup v1 has no soft memory ceiling (memory.high is v2 only))",
				"memory.high: not enforced: cgroup v1 has no soft memory ceiling (memory.high is v2 only)", // the note
			} {
				if !strings.Contains(text, want) {
					t.Errorf("explain lacks %q:\n%s", want, text)
				}
			}
			t.Logf("%s: criguard explain:\n%s", rt, text)
			var reports []criservice.Report
			lab.DecodeJSON(t, criguardCLI(t, append([]string{"status", "-o", "json"}, flags...)...), &reports)
			found := false
			for _, r := range reports {
				if r.ID != id {
					continue
				}
				found = true
				if !r.Match || len(r.Resources) != 1 || r.Resources[0].File != "memory.high" || r.Resources[0].InSync ||
					!strings.HasPrefix(r.Resources[0].Note, "not enforced") {
					t.Errorf("status of the memory.high container = %+v", r)
				}
			}
			if !found {
				t.Errorf("status lists no %s among %d reports", id, len(reports))
			}
		})
	}
}

// crictl statsp through criguard in front of cri-dockerd lists the pods with CPU and
// memory, where cri-dockerd alone answers Unimplemented.
func TestResourcesPodStatsDocker(t *testing.T) {
	dock := lab.Docker(t)
	cg := lab.Criguard(t, dock.Endpoint, "--resolver", "auto", "--docker-endpoint", dock.DockerEndpoint)
	pod := lab.NewPod(t, "stats", "stats-e2e")
	podID := lab.RunPod(t, cg.Endpoint, pod)
	id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "worker",
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 3600 & wait"}})
	lab.WaitContainerState(t, cg.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)

	if out, err := lab.CrictlErr(t, dock.Endpoint, "statsp", "-o", "json"); err == nil || !strings.Contains(err.Error(), "code = Unimplemented") {
		t.Fatalf("cri-dockerd alone: statsp = %q, %v; want Unimplemented (is this cri-dockerd newer?)", lastLines(out, 3), err)
	}
	var stats struct {
		Stats []struct {
			Attributes struct {
				ID       string `json:"id"`
				Metadata struct{ Name, Namespace string }
			} `json:"attributes"`
			Linux struct {
				CPU struct {
					UsageCoreNanoSeconds struct {
						Value string `json:"value"`
					} `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory struct {
					WorkingSetBytes struct {
						Value string `json:"value"`
					} `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"linux"`
		} `json:"stats"`
	}
	lab.CrictlJSON(t, cg.Endpoint, &stats, "statsp", "-o", "json")
	found := false
	for _, s := range stats.Stats {
		if s.Attributes.ID != podID {
			continue
		}
		found = true
		cpu, _ := strconv.ParseUint(s.Linux.CPU.UsageCoreNanoSeconds.Value, 10, 64)
		mem, _ := strconv.ParseUint(s.Linux.Memory.WorkingSetBytes.Value, 10, 64)
		t.Logf("statsp through criguard: pod %s/%s cpu %d ns, working set %d bytes", s.Attributes.Metadata.Namespace, s.Attributes.Metadata.Name, cpu, mem)
		if cpu == 0 || mem == 0 {
			t.Fatalf("pod stats with zero CPU (%d) or memory (%d)%s", cpu, mem, criguardLog(cg))
		}
	}
	if !found {
		t.Fatalf("statsp through criguard does not list pod %s: %+v%s", podID, stats, criguardLog(cg))
	}
	// The table form too, as an operator runs it.
	if out := lab.Crictl(t, cg.Endpoint, "statsp", "--id", podID); !strings.Contains(out, "stats") {
		t.Fatalf("crictl statsp table = %q", out)
	}
}

// resourcesRuntime starts the named runtime and returns its CRI endpoint and the
// criguard flags for it.
func resourcesRuntime(t *testing.T, name string) (string, []string) {
	t.Helper()
	switch name {
	case "docker":
		dock := lab.Docker(t)
		return dock.Endpoint, []string{"--resolver", "auto", "--docker-endpoint", dock.DockerEndpoint}
	case "crio":
		// CRI-O needs no flag of its own: auto picks the CRI verbose status chain.
		return lab.CRIO(t).Endpoint, []string{"--resolver", "auto"}
	}
	ctrd := lab.Containerd(t)
	return ctrd.Endpoint, []string{"--resolver", "auto", "--containerd-address", ctrd.Socket}
}

// waitContainerLog polls the container's log until it holds marker, and returns it.
func waitContainerLog(t *testing.T, endpoint, id, marker string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := lab.CrictlErr(t, endpoint, "logs", id)
		if strings.Contains(out, marker) || time.Now().After(deadline) {
			return strings.TrimSpace(out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
