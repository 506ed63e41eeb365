//go:build e2e

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/test/e2e/lab"
)

// TestNRI runs criguard as an NRI plugin of containerd 2.4 and of CRI-O 1.34 (NRI
// on), with the test as kubelet talking to the runtime directly: the throttle cases
// (measured, a pod budget, the first instruction, explain and status, a kill -9 and a
// start behind its back), then resources at creation and a reload reaching a running
// container through NRI's updates, a hung plugin and restarts with starts meanwhile,
// and the proxy refused beside it.
func TestNRI(t *testing.T) {
	runtimes := []struct {
		name  string
		start func(t *testing.T) ociUnderTest
	}{
		{"containerd2", func(t *testing.T) ociUnderTest {
			ctrd := lab.Containerd(t, lab.WithContainerd2(), lab.WithNRI())
			return ociUnderTest{endpoint: ctrd.Endpoint, dataRoot: ctrd.Root, nriSocket: ctrd.NRISocket,
				args: []string{"--containerd-address", ctrd.Socket}}
		}},
		{"crio", func(t *testing.T) ociUnderTest {
			crio := lab.CRIO(t, lab.WithCRIONRI())
			return ociUnderTest{endpoint: crio.Endpoint, dataRoot: crio.Root, nriSocket: crio.NRISocket, handler: crio.Handlers["runc"]}
		}},
	}
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			o := rt.start(t)
			cg := throttleCases(t, o)
			if !cg.Running() {
				t.Fatalf("the plugin is not running after the throttle cases%s", criguardLog(cg))
			}
			dev := lab.WholeDisk(t, o.dataRoot)
			t.Run("resources-and-reload", func(t *testing.T) { nriResources(t, o, cg) })
			t.Run("hung-plugin", func(t *testing.T) { nriHung(t, o, cg, dev) })
			t.Run("restarts-with-starts-meanwhile", func(t *testing.T) { nriRestarts(t, o, cg, dev) })
			t.Run("proxy-refused-beside", func(t *testing.T) { nriProxyRefused(t, o, cg) })
		})
	}
}

// nriResources: a class's cpu and pids reach a container at creation (NRI's
// adjustment; pids.max written before start on v1), and a reload that tightens the
// class reaches the running container through NRI's UpdateContainers.
func nriResources(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess) {
	ep, policyPath := cg.Endpoint, cg.Arg("--policy")
	mark := logMark(t, cg)
	writePolicy(t, policyPath, throttlePolicy(o.dataRoot, "1MiB")+reloadResourcesPolicy(100, "500m", 40))
	waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
	pod := o.pod(t, "reload", "reload-nri")
	podID := lab.RunPod(t, ep, pod)
	id := startWithResources(t, ep, podID, pod, &lab.Container{Name: "reloaded",
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}},
		&runtimeapi.LinuxContainerResources{CpuShares: 1024}) // kubelet's, for one CPU
	lab.WaitContainerState(t, ep, id, "CONTAINER_RUNNING", 30*time.Second)
	rel := lab.ContainerCgroup(t, ep, pod, id)
	cpuDir, pidsDir := controllerDir(t, "cpu", rel), controllerDir(t, "pids", rel)
	assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(100))
	assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 50000)
	assertCgroupNumber(t, cg, pidsDir, "pids.max", 40)

	mark = logMark(t, cg)
	writePolicy(t, policyPath, throttlePolicy(o.dataRoot, "1MiB")+reloadResourcesPolicy(20, "250m", 30))
	waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
	reloaded := time.Now()
	waitLog(t, cg, mark, "NRI: running containers updated to the new policy", 30*time.Second)
	waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
	t.Logf("reload reached the running container through NRI within %s", time.Since(reloaded).Round(10*time.Millisecond))
	assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(20))
	assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 25000)
	assertCgroupNumber(t, cg, pidsDir, "pids.max", 30)

	// Loosening the class loosens nothing that runs.
	mark = logMark(t, cg)
	writePolicy(t, policyPath, throttlePolicy(o.dataRoot, "1MiB")+reloadResourcesPolicy(100, "500m", 30))
	waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
	waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
	assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(20))
	assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 25000)
}

// nriHung: a plugin that hangs (SIGSTOP) costs a start the runtime's request
// timeout once; the runtime drops it and later starts do not wait. Continued, the
// plugin finds its connection gone, registers again, and the container started
// meanwhile is throttled by the pass after the listing.
func nriHung(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess, dev string) {
	ep := cg.Endpoint
	cg.Pause(t)
	paused := true
	defer func() {
		if paused {
			cg.Resume(t)
		}
	}()
	began := time.Now()
	first := o.startWorker(t, ep, "throttled-hung", "first")
	firstTook := time.Since(began)
	began = time.Now()
	second := o.startWorker(t, ep, "throttled-hung", "second")
	secondTook := time.Since(began)
	t.Logf("with the plugin hung: first pod and container started in %s, the next in %s",
		firstTook.Round(10*time.Millisecond), secondTook.Round(10*time.Millisecond))
	if secondTook > 2*time.Second+firstTook/2 && secondTook > 3*time.Second {
		t.Errorf("the runtime still waits for the hung plugin: the second start took %s", secondTook)
	}
	assertThrottle(t, cg, "started while the plugin hung", first.dir, writeBPSFile, dev, 0)

	mark := logMark(t, cg)
	cg.Resume(t)
	paused = false
	resumed := time.Now()
	waitLog(t, cg, mark, "NRI: synchronized", 30*time.Second)
	t.Logf("registered again %s after SIGCONT", time.Since(resumed).Round(10*time.Millisecond))
	waitThrottle(t, cg, "first, after the plugin came back", first.dir, writeBPSFile, dev, 1*mib, 10*time.Second)
	waitThrottle(t, cg, "second, after the plugin came back", second.dir, writeBPSFile, dev, 1*mib, 10*time.Second)
}

// nriRestarts: kill -9 and SIGTERM of the plugin under a running throttled
// container and starts meanwhile: every start succeeds at once, nothing is lifted,
// and what started meanwhile is throttled once the plugin is back.
func nriRestarts(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess, dev string) {
	ep := cg.Endpoint
	survivor := o.startWorker(t, ep, "throttled-survivor", "survivor")
	assertThrottle(t, cg, "survivor", survivor.dir, writeBPSFile, dev, 1*mib)
	for _, how := range []string{"kill -9", "SIGTERM"} {
		if how == "kill -9" {
			cg.Kill(t)
		} else if err := cg.Stop(t, 15*time.Second); err != nil {
			t.Errorf("plugin exit on SIGTERM: %v", err)
		}
		var meanwhile []*worker
		for i := range 3 {
			began := time.Now()
			w := o.startWorker(t, ep, "throttled-down", strings.ReplaceAll(how, " ", "")+"-"+string(rune('a'+i)))
			t.Logf("%s: start %d with the plugin down took %s", how, i, time.Since(began).Round(10*time.Millisecond))
			meanwhile = append(meanwhile, w)
		}
		assertThrottle(t, cg, how+": survivor with the plugin down", survivor.dir, writeBPSFile, dev, 1*mib)
		cg.Start(t)
		for i, w := range meanwhile {
			waitThrottle(t, cg, how+": started meanwhile "+string(rune('a'+i)), w.dir, writeBPSFile, dev, 1*mib, 10*time.Second)
		}
		time.Sleep(reconcileInterval + 500*time.Millisecond)
		assertThrottle(t, cg, how+": survivor after the restart and a pass", survivor.dir, writeBPSFile, dev, 1*mib)
	}
	measure(t, cg, ep, survivor.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
}

// nriProxyRefused: the proxy on the plugin's state dir refuses to start and says why.
func nriProxyRefused(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess) {
	cmd := exec.Command(os.Getenv("CRIGUARD_BIN"), "serve", "--listen", "unix://"+t.TempDir()+"/p.sock",
		"--runtime-endpoint", o.endpoint, "--state-dir", cg.StateDir, "--metrics-addr", "", "--policy", cg.PolicyPath)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("criguard serve beside the plugin: err %v, want exit 1; output:\n%s", err, out)
	}
	for _, want := range []string{"another criguard runs on this state dir", "NRI plugin, pid"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("criguard serve beside the plugin says %q, want it to contain %q", out, want)
		}
	}
	if !cg.Running() {
		t.Errorf("the plugin stopped when the proxy was tried%s", criguardLog(cg))
	}
}
