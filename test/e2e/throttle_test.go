//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// blkio v1 throttle files, as the kernel names them.
const (
	writeBPSFile  = "blkio.throttle.write_bps_device"
	readBPSFile   = "blkio.throttle.read_bps_device"
	writeIOPSFile = "blkio.throttle.write_iops_device"
	mib           = 1 << 20
)

// The measured workloads: O_DIRECT, since v1 blkio does not see buffered writes.
const (
	write3MiB = "dd if=/dev/zero of=/data/f bs=64k count=48 oflag=direct"
	read3MiB  = "dd if=/data/f of=/dev/null bs=64k iflag=direct"
	// 60 writes of 4 KiB: at 20 IOPS about 3 s, while bytes/s stay far below any limit.
	write60IOs = "dd if=/dev/zero of=/data/iops bs=4k count=60 oflag=direct"
)

// throttlePolicy is the e2e policy: the device is given as a path (the runtime's data
// directory) so that criguard's device resolution is part of what is proved.
func throttlePolicy(devicePath, writeBPS string) string {
	return fmt.Sprintf(`device "data" {
  path = %q
}

class "slow" {
  io {
    device    = "data"
    write_bps = %q
    read_bps  = "2MiB"
  }
}

class "few-iops" {
  io {
    device     = "data"
    write_iops = 20
  }
}

class "shared" {
  io {
    device    = "data"
    write_bps = "1MiB"
  }
}

rule "throttled" {
  match {
    namespaces = ["throttled-*"]
  }
  class = "slow"
}

rule "iops" {
  match {
    namespaces = ["iops-*"]
  }
  class = "few-iops"
}

rule "pod-budget" {
  match {
    namespaces = ["shared-*"]
  }
  class = "shared"
  scope = "pod"
}
`, devicePath, writeBPS)
}

// writePolicy replaces the policy file at path atomically (write, then rename over
// it), as a ConfigMap update or most editors do.
func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatalf("write policy %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("replace policy %s: %v", path, err)
	}
}

// newPolicyFile writes the policy into a fresh directory of its own (criguard watches
// the directory) and returns the file's path.
func newPolicyFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.hcl")
	writePolicy(t, path, text)
	return path
}

// worker is a running container with a disk directory at /data.
type worker struct {
	pod    *lab.Pod
	podID  string
	id     string
	volume string // host side of /data
	dir    string // the container's blkio cgroup dir
}

// startWorker runs a pod in namespace ns and a sleeping busybox container in it, both
// through endpoint, with a directory of the root disk at /data.
func startWorker(t *testing.T, endpoint, ns, name string) *worker {
	t.Helper()
	return startWorkerIn(t, endpoint, lab.NewPod(t, name, ns), name)
}

// startWorkerIn is startWorker in a pod the caller describes (a runtime handler, say).
func startWorkerIn(t *testing.T, endpoint string, pod *lab.Pod, name string) *worker {
	t.Helper()
	w := &worker{pod: pod, volume: lab.DiskDir(t)}
	w.podID = lab.RunPod(t, endpoint, w.pod)
	w.id = w.addContainer(t, endpoint, name, w.volume)
	w.dir = lab.BlkioDir(t, lab.ContainerCgroup(t, endpoint, w.pod, w.id))
	return w
}

// addContainer starts another sleeping container in the worker's pod.
func (w *worker) addContainer(t *testing.T, endpoint, name, volume string) string {
	t.Helper()
	id := lab.StartContainer(t, endpoint, w.podID, w.pod, &lab.Container{
		Name: name,
		// PID 1 ignores SIGTERM unless it traps it: without the trap every stop would
		// wait out the runtime's grace period.
		Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
		Mounts:  []*runtimeapi.Mount{lab.BindMount(volume, "/data")},
	})
	lab.WaitContainerState(t, endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
	return id
}

// criguardLog is the tail of criguard's log for failure messages.
func criguardLog(cg *lab.CriguardProcess) string {
	return "\ncriguard log:\n" + cg.Log(25)
}

// assertThrottle checks one limit in a cgroup file right now.
func assertThrottle(t *testing.T, cg *lab.CriguardProcess, what, dir, file, dev string, want uint64) {
	t.Helper()
	got, err := lab.Throttle(dir, file, dev)
	if err != nil {
		t.Fatalf("%s: %v%s", what, err, criguardLog(cg))
	}
	if got != want {
		t.Fatalf("%s: %s/%s holds %s %d, want %d%s", what, dir, file, dev, got, want, criguardLog(cg))
	}
}

// measure runs timed in the container and fails unless it took between lo and hi
// and printed wantOut.
func measure(t *testing.T, cg *lab.CriguardProcess, endpoint, id, timed, wantOut string, lo, hi time.Duration) lab.Timing {
	t.Helper()
	got, err := lab.TimedExec(t, endpoint, id, "", timed)
	if err != nil {
		t.Fatalf("%s: %v%s", timed, err, criguardLog(cg))
	}
	if !strings.Contains(got.Output, wantOut) {
		t.Fatalf("%s printed %q, want it to report %q", timed, got.Output, wantOut)
	}
	t.Logf("%s: %.2fs in the container (%.2fs with exec)", timed, got.Elapsed.Seconds(), got.Wall.Seconds())
	if !lab.Between(got.Elapsed, lo, hi) {
		t.Fatalf("%s took %.2fs, want %.1fs–%.1fs%s", timed, got.Elapsed.Seconds(), lo.Seconds(), hi.Seconds(), criguardLog(cg))
	}
	return got
}

// TestThrottleContainerd proves on the real containerd that containers started through
// criguard run at the policy's speed: measured with dd, and read back from the cgroup
// files.
func TestThrottleContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--metrics-addr", "127.0.0.1:0")
	ep := cg.Endpoint

	t.Run("bps", func(t *testing.T) {
		w := startWorker(t, ep, "throttled-bps", "writer")
		// The hook applies before StartContainer returns: no waiting.
		assertThrottle(t, cg, "write limit after start", w.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "read limit after start", w.dir, readBPSFile, dev, 2*mib)
		measure(t, cg, ep, w.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
		measure(t, cg, ep, w.id, read3MiB, "48+0 records in", 1100*time.Millisecond, 4*time.Second)
	})

	t.Run("iops", func(t *testing.T) {
		w := startWorker(t, ep, "iops-e2e", "iops")
		assertThrottle(t, cg, "write IOPS limit after start", w.dir, writeIOPSFile, dev, 20)
		assertThrottle(t, cg, "no bytes/s limit for the IOPS class", w.dir, writeBPSFile, dev, 0)
		measure(t, cg, ep, w.id, write60IOs, "60+0 records out", 2300*time.Millisecond, 6*time.Second)
	})

	t.Run("unmatched", func(t *testing.T) {
		w := startWorker(t, ep, "free-e2e", "free")
		assertThrottle(t, cg, "unmatched namespace", w.dir, writeBPSFile, dev, 0)
		measure(t, cg, ep, w.id, write3MiB, "48+0 records out", 0, time.Second)
	})
}

// TestThrottlePodScope proves a pod-scope rule: one 1 MiB/s budget for the whole pod,
// shared by its containers writing at the same time.
//
// v1 blkio throttles are not hierarchical (the kernel limits only the tasks of the
// very cgroup that holds the limit), so on a v1 host criguard splits the budget among
// the pod's running containers and re-splits it as they start and stop; the pod's
// own cgroup holds nothing. These tests run on v1 hosts (see BlkioDir).
func TestThrottlePodScope(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--metrics-addr", "127.0.0.1:0")
	ep := cg.Endpoint

	w := startWorker(t, ep, "shared-e2e", "first")
	podDir := lab.BlkioDir(t, w.pod.CgroupParent())
	assertThrottle(t, cg, "pod cgroup (a v1 limit there would bind no container)", podDir, writeBPSFile, dev, 0)
	assertThrottle(t, cg, "the pod's only container has the whole budget", w.dir, writeBPSFile, dev, 1*mib)

	second := w.addContainer(t, ep, "second", w.volume)
	secondDir := lab.BlkioDir(t, w.pod.CgroupParent()+"/"+second)
	assertThrottle(t, cg, "first container after the second started", w.dir, writeBPSFile, dev, mib/2)
	assertThrottle(t, cg, "second container", secondDir, writeBPSFile, dev, mib/2)
	sharedBudget(t, cg, ep, w.volume, map[string]string{"first": w.id, "second": second})

	// The second stops: its share goes back to the first.
	lab.Crictl(t, ep, "stop", "--timeout", "5", second)
	assertThrottle(t, cg, "first container after the second stopped", w.dir, writeBPSFile, dev, 1*mib)
	measure(t, cg, ep, w.id, "dd if=/dev/zero of=/data/alone bs=64k count=24 oflag=direct", "24+0 records out",
		1100*time.Millisecond, 4*time.Second)
}

// sharedBudget makes the containers (name → id) write 1.5 MiB each at the same moment
// and expects the pod's 1 MiB/s to be shared: both need about 3 s, where 1.5 s would
// mean each had a budget of its own.
func sharedBudget(t *testing.T, cg *lab.CriguardProcess, endpoint, volume string, ids map[string]string) {
	t.Helper()
	goFile := filepath.Join(volume, "go")
	type result struct {
		name   string
		timing lab.Timing
		err    error
	}
	results := make(chan result, len(ids))
	var wg sync.WaitGroup
	for name, id := range ids {
		wg.Go(func() {
			// Both wait on the same file so that their writes start together.
			before := fmt.Sprintf("touch /data/ready-%s; while [ ! -e /data/go ]; do sleep 0.02; done", name)
			timed := fmt.Sprintf("dd if=/dev/zero of=/data/%s bs=64k count=24 oflag=direct", name)
			timing, err := lab.TimedExec(t, endpoint, id, before, timed)
			results <- result{name, timing, err}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for name := range ids {
		for {
			if _, err := os.Stat(filepath.Join(volume, "ready-"+name)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s never got ready to write (no %s/ready-%s)", name, volume, name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatalf("start the writers: %v", err)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("writer %s: %v", r.name, r.err)
			continue
		}
		t.Logf("writer %s: 1.5 MiB in %.2fs", r.name, r.timing.Elapsed.Seconds())
		if !lab.Between(r.timing.Elapsed, 2200*time.Millisecond, 6*time.Second) {
			t.Errorf("writer %s wrote 1.5 MiB in %.2fs, want 2.2s–6s (one 1 MiB/s budget shared by two writers)%s",
				r.name, r.timing.Elapsed.Seconds(), criguardLog(cg))
		}
	}
}

// TestThrottleDocker proves the same on dockerd behind cri-dockerd, where the cgroup
// comes from Docker's inspect: with --resolver auto (criguard must notice Docker from
// the runtime's Version) and with --resolver docker.
func TestThrottleDocker(t *testing.T) {
	dock := lab.Docker(t)
	dev := lab.WholeDisk(t, dock.DataRoot)
	policyPath := newPolicyFile(t, throttlePolicy(dock.DataRoot, "1MiB"))
	serve := func(t *testing.T, resolver, dockerEndpoint string) *lab.CriguardProcess {
		return lab.Criguard(t, dock.Endpoint, "--policy", policyPath, "--resolver", resolver,
			"--docker-endpoint", dockerEndpoint, "--metrics-addr", "127.0.0.1:0")
	}

	t.Run("auto", func(t *testing.T) {
		cg := serve(t, "auto", dock.DockerEndpoint)
		w := startWorker(t, cg.Endpoint, "throttled-docker", "writer")
		assertThrottle(t, cg, "write limit after start", w.dir, writeBPSFile, dev, 1*mib)
		measure(t, cg, cg.Endpoint, w.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	})

	// With auto and an unreachable Docker API, auto still picks the Docker chain (from
	// the runtime's Version), and its last resort finds the cgroup anyway: the pid
	// comes from the CRI verbose status, not from the Docker API that is down.
	t.Run("auto-docker-api-down", func(t *testing.T) {
		bogus := "unix:///run/cg-e2e-no-docker-" + fmt.Sprint(os.Getpid()) + ".sock"
		cg := serve(t, "auto", bogus)
		w := startWorker(t, cg.Endpoint, "throttled-docker", "orphan")
		assertThrottle(t, cg, "limit found through /proc without the Docker API", w.dir, writeBPSFile, dev, 1*mib)
		if log := cg.Log(200); !strings.Contains(log, "resolvers=docker,proc") {
			t.Fatalf("criguard --resolver auto in front of cri-dockerd did not pick the Docker chain%s", criguardLog(cg))
		}
	})

	t.Run("resolver-docker", func(t *testing.T) {
		cg := serve(t, "docker", dock.DockerEndpoint)
		w := startWorker(t, cg.Endpoint, "throttled-docker", "forced")
		assertThrottle(t, cg, "write limit after start", w.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "read limit after start", w.dir, readBPSFile, dev, 2*mib)
	})
}
