//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/test/e2e/lab"
)

// ociUnderTest is a CRI runtime and the OCI runtime its pods run on, for the throttle
// cases every runtime must pass.
type ociUnderTest struct {
	// endpoint is the CRI runtime's own socket; dataRoot a directory of its on the
	// disk containers write to (the policy's device).
	endpoint, dataRoot string
	// handler is the runtime handler the pods ask for; nil: the runtime's default.
	handler *lab.OCIRuntime
	// args are criguard flags for this runtime (serve, explain and status alike).
	args []string
	// nriSocket, when set, runs criguard as the runtime's NRI plugin, not a proxy.
	nriSocket string
}

// pod is a burstable pod on the runtime handler under test.
func (o ociUnderTest) pod(t *testing.T, name, ns string) *lab.Pod {
	t.Helper()
	p := lab.NewPod(t, name, ns)
	if o.handler != nil {
		p.RuntimeHandler = o.handler.Name
	}
	return p
}

// startWorker is startWorker on the handler under test; it fails unless that OCI
// runtime created the container.
func (o ociUnderTest) startWorker(t *testing.T, endpoint, ns, name string) *worker {
	t.Helper()
	w := startWorkerIn(t, endpoint, o.pod(t, name, ns), name)
	if o.handler != nil && !o.handler.Created(w.id) {
		t.Fatalf("container %s was not created by %s (%s lists no create of it)", w.id, o.handler.Name, o.handler.CreatedLog)
	}
	return w
}

// TestCRIO runs the throttle cases on CRI-O, once with runc and once with crun as the
// pods' runtime handler, and checks CRI-O's cgroup layout and criguard's resolver.
func TestCRIO(t *testing.T) {
	crio := lab.CRIO(t)
	for _, name := range []string{"runc", "crun"} {
		t.Run(name, func(t *testing.T) {
			o := ociUnderTest{endpoint: crio.Endpoint, dataRoot: crio.Root, handler: crio.Handlers[name]}
			cg := throttleCases(t, o)
			t.Run("cgroup-layout", func(t *testing.T) { crioLayout(t, o, cg) })
		})
	}
}

// TestContainerdCrun runs the throttle cases on containerd with crun as a second
// runtime handler (the runc shim with crun as its binary).
func TestContainerdCrun(t *testing.T) {
	ctrd := lab.Containerd(t, lab.WithRuntimeHandler("crun"))
	throttleCases(t, ociUnderTest{endpoint: ctrd.Endpoint, dataRoot: ctrd.Root, handler: ctrd.Handlers["crun"],
		args: []string{"--containerd-address", ctrd.Socket}})
}

// throttleCases proves, on one runtime and handler, what TestThrottleContainerd,
// TestThrottlePodScope, TestFaultsContainerd and TestExplainAndStatusContainerd prove
// on containerd with runc: measured limits, a pod budget, the limit before the first
// instruction, a restart of criguard, explain and status. It returns the criguard.
func throttleCases(t *testing.T, o ociUnderTest) *lab.CriguardProcess {
	dev := lab.WholeDisk(t, o.dataRoot)
	policyPath := newPolicyFile(t, throttlePolicy(o.dataRoot, "1MiB"))
	args := append([]string{"--policy", policyPath, "--resolver", "auto", "--reconcile-interval", reconcileInterval.String()}, o.args...)
	var cg *lab.CriguardProcess
	if o.nriSocket != "" {
		cg = lab.CriguardNRI(t, o.endpoint, o.nriSocket, args...)
	} else {
		cg = lab.Criguard(t, o.endpoint, args...)
	}
	// explain and status ask the runtime directly and read the daemon's ownership record.
	flags := append([]string{"--runtime-endpoint", o.endpoint, "--policy", policyPath, "--resolver", "auto",
		"--state-dir", cg.StateDir}, o.args...)
	ep := cg.Endpoint

	// Lives on past its subtest: explain, status and the restart look at it.
	slow := o.startWorker(t, ep, "throttled-bps", "writer")
	t.Run("processes", func(t *testing.T) { processesInCgroup(t, ep, slow) })

	t.Run("bps", func(t *testing.T) {
		assertThrottle(t, cg, "write limit after start", slow.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "read limit after start", slow.dir, readBPSFile, dev, 2*mib)
		measure(t, cg, ep, slow.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
		measure(t, cg, ep, slow.id, read3MiB, "48+0 records in", 1100*time.Millisecond, 4*time.Second)
	})

	t.Run("unmatched", func(t *testing.T) {
		w := o.startWorker(t, ep, "free-e2e", "free")
		assertThrottle(t, cg, "unmatched namespace", w.dir, writeBPSFile, dev, 0)
		measure(t, cg, ep, w.id, write3MiB, "48+0 records out", 0, time.Second)
	})

	t.Run("iops", func(t *testing.T) {
		w := o.startWorker(t, ep, "iops-e2e", "iops")
		assertThrottle(t, cg, "write IOPS limit after start", w.dir, writeIOPSFile, dev, 20)
		assertThrottle(t, cg, "no bytes/s limit for the IOPS class", w.dir, writeBPSFile, dev, 0)
		measure(t, cg, ep, w.id, write60IOs, "60+0 records out", 2300*time.Millisecond, 6*time.Second)
	})

	t.Run("pod-scope", func(t *testing.T) {
		w := o.startWorker(t, ep, "shared-e2e", "first")
		podDir := lab.BlkioDir(t, w.pod.CgroupParent())
		assertThrottle(t, cg, "pod cgroup (a v1 limit there would bind no container)", podDir, writeBPSFile, dev, 0)
		assertThrottle(t, cg, "the pod's only container has the whole budget", w.dir, writeBPSFile, dev, 1*mib)
		second := w.addContainer(t, ep, "second", w.volume)
		secondDir := lab.BlkioDir(t, lab.ContainerCgroup(t, ep, w.pod, second))
		assertThrottle(t, cg, "first container after the second started", w.dir, writeBPSFile, dev, mib/2)
		assertThrottle(t, cg, "second container", secondDir, writeBPSFile, dev, mib/2)
		sharedBudget(t, cg, ep, w.volume, map[string]string{"first": w.id, "second": second})
		lab.Crictl(t, ep, "stop", "--timeout", "5", second)
		assertThrottle(t, cg, "first container after the second stopped", w.dir, writeBPSFile, dev, 1*mib)
	})

	t.Run("first-instruction", func(t *testing.T) { firstInstruction(t, o, cg, dev) })

	t.Run("explain-status", func(t *testing.T) {
		explainStatus(t, flags, slow, dev)
	})

	t.Run("criguard-restart", func(t *testing.T) {
		cg.Kill(t)
		defer func() {
			if !cg.Running() { // the cases after this one need it
				cg.Start(t)
			}
		}()
		assertThrottle(t, cg, "survivor with criguard dead (the kernel keeps it)", slow.dir, writeBPSFile, dev, 1*mib)
		// Started on the runtime's own socket while criguard is dead: only the pass at
		// criguard's start can throttle it.
		behind := o.startWorker(t, o.endpoint, "throttled-restart", "behind-back")
		assertThrottle(t, cg, "started behind criguard's back", behind.dir, writeBPSFile, dev, 0)
		cg.Start(t)
		startup := reconcileInterval - 500*time.Millisecond
		waitThrottle(t, cg, "behind-back after restart", behind.dir, writeBPSFile, dev, 1*mib, startup)
		assertThrottle(t, cg, "behind-back read limit", behind.dir, readBPSFile, dev, 2*mib)
		// Past a full pass the survivor still holds its limit: a restart resets nothing.
		time.Sleep(reconcileInterval + 500*time.Millisecond)
		assertThrottle(t, cg, "survivor after restart", slow.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "survivor read limit after restart", slow.dir, readBPSFile, dev, 2*mib)
		measure(t, cg, ep, behind.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	})
	return cg
}

// firstInstruction starts a container whose first command prints its own blkio
// write limit: the limit must be in its cgroup before that command runs, not only
// by the time StartContainer returns.
func firstInstruction(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess, dev string) {
	ep := cg.Endpoint
	pod := o.pod(t, "first", "throttled-first")
	podID := lab.RunPod(t, ep, pod)
	id := lab.StartContainer(t, ep, podID, pod, &lab.Container{
		Name:    "cat",
		Command: []string{"sh", "-c", "cat /sys/fs/cgroup/blkio/" + writeBPSFile + "; echo printed; trap 'exit 0' TERM; sleep 3600 & wait"},
	})
	lab.WaitContainerState(t, ep, id, "CONTAINER_RUNNING", 30*time.Second)
	// The file the command read is the container's own cgroup's (runc and crun bind
	// it there on v1): now it must hold the limit.
	if out := lab.Crictl(t, ep, "exec", "-s", id, "cat", "/sys/fs/cgroup/blkio/"+writeBPSFile); !strings.Contains(out, dev+" 1048576") {
		t.Fatalf("inside the container, /sys/fs/cgroup/blkio/%s holds %q after start, want %s 1048576", writeBPSFile, out, dev)
	}
	var logged string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logged, "printed") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		logged = lab.Crictl(t, ep, "logs", id)
	}
	want := dev + " 1048576"
	if !strings.Contains(logged, want) {
		got, _ := lab.Throttle(lab.BlkioDir(t, lab.ContainerCgroup(t, ep, pod, id)), writeBPSFile, dev)
		t.Fatalf("the container's first command printed %q as its write limit, want %q (the cgroup holds %d now: the limit came after the first instruction)%s",
			strings.TrimSpace(logged), want, got, criguardLog(cg))
	}
	t.Logf("first command saw: %q", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(logged), "printed")))
}

// explainStatus checks that explain and status, asking the runtime directly, name the
// throttled container, its cgroup and its limit.
func explainStatus(t *testing.T, flags []string, w *worker, dev string) {
	var ex criservice.Explanation
	lab.DecodeJSON(t, criguardCLI(t, append(append([]string{"explain", "-o", "json"}, flags...), w.id)...), &ex)
	if ex.ID != w.id || ex.Decision.Rule != "throttled" || ex.Workload.Namespace != "throttled-bps" {
		t.Errorf("explain id/decision/workload = %s / %+v / %+v", ex.ID, ex.Decision, ex.Workload)
	}
	if ex.Dir != w.dir {
		t.Errorf("explain cgroup dir = %q, want %q", ex.Dir, w.dir)
	}
	if len(ex.Current) != 1 || ex.Current[0].Device.String() != dev || ex.Current[0].WriteBPS != 1*mib || len(ex.Pending) != 0 {
		t.Errorf("explain read back %+v pending %+v, want %s at 1 MiB/s and nothing pending", ex.Current, ex.Pending, dev)
	}
	text := criguardCLI(t, append(append([]string{"explain"}, flags...), w.id)...)
	for _, want := range []string{w.id, `rule "throttled"`, "wbps=1MiB", w.dir} {
		if !strings.Contains(text, want) {
			t.Errorf("explain text lacks %q:\n%s", want, text)
		}
	}
	t.Logf("criguard explain:\n%s", text)

	var reports []criservice.Report
	lab.DecodeJSON(t, criguardCLI(t, append([]string{"status", "-o", "json"}, flags...)...), &reports)
	found := false
	for _, r := range reports {
		if r.ID == w.id {
			found = true
			if !r.Match || len(r.Have) != 1 || r.Have[0].WriteBPS != 1*mib || r.Dir != w.dir || r.Container != "writer" {
				t.Errorf("status of the throttled container = %+v", r)
			}
		}
	}
	if !found {
		t.Errorf("status lists no %s among %d reports", w.id, len(reports))
	}
	table := criguardCLI(t, append([]string{"status"}, flags...)...)
	for _, want := range []string{"throttled-bps/", "writer", "1MiB"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	t.Logf("criguard status:\n%s", table)
}

// processesInCgroup checks that the container's processes sit in the very cgroup that
// holds its limit (v1 limits bind only that cgroup's tasks), with no child cgroup
// below it: crun on v1 makes no container/ child.
func processesInCgroup(t *testing.T, endpoint string, w *worker) {
	got := lab.WaitContainerState(t, endpoint, w.id, "CONTAINER_RUNNING", 5*time.Second)
	mount := lab.BlkioDir(t, "/")
	assertInCgroup(t, got.Info.Pid, "blkio", strings.TrimPrefix(w.dir, mount))
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		t.Fatalf("read %s: %v", w.dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("%s has a child cgroup %s: processes may sit below the throttled cgroup", w.dir, e.Name())
		}
	}
	exec := lab.Crictl(t, endpoint, "exec", "-s", w.id, "cat", "/proc/self/cgroup")
	if !strings.Contains(exec+"\n", ":blkio:"+strings.TrimPrefix(w.dir, mount)+"\n") {
		t.Errorf("a process exec'd into the container is not in %s:\n%s", w.dir, exec)
	}
}

// crioLayout checks CRI-O's cgroupfs layout against what criguard does: the container
// in <parent>/crio-<id>, conmon beside it in crio-conmon-<id> and never throttled,
// and --resolver auto on the CRI verbose status chain.
func crioLayout(t *testing.T, o ociUnderTest, cg *lab.CriguardProcess) {
	dev := lab.WholeDisk(t, o.dataRoot)
	w := o.startWorker(t, cg.Endpoint, "throttled-layout", "layout")
	assertThrottle(t, cg, "write limit", w.dir, writeBPSFile, dev, 1*mib)

	got := lab.WaitContainerState(t, cg.Endpoint, w.id, "CONTAINER_RUNNING", 5*time.Second)
	if want := w.pod.CgroupParent() + "/crio-" + w.id; got.Info.RuntimeSpec.Linux.CgroupsPath != want {
		t.Errorf("CRI-O's cgroupsPath = %q, want %q", got.Info.RuntimeSpec.Linux.CgroupsPath, want)
	}

	conmonDir := lab.BlkioDir(t, w.pod.CgroupParent()+"/crio-conmon-"+w.id)
	assertNoThrottle(t, "conmon's cgroup", conmonDir)
	// The infra (pause) container of the pod: no budget share, no limit.
	assertNoThrottle(t, "the infra container's cgroup", lab.BlkioDir(t, w.pod.CgroupParent()+"/crio-"+w.podID))
	procs, err := os.ReadFile(filepath.Join(conmonDir, "cgroup.procs"))
	if err != nil {
		t.Fatalf("conmon's cgroup: %v", err)
	}
	conmon := false
	for _, pid := range strings.Fields(string(procs)) {
		comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		conmon = conmon || strings.TrimSpace(string(comm)) == "conmon"
	}
	if !conmon {
		t.Errorf("%s holds no conmon (procs %q)", conmonDir, strings.Fields(string(procs)))
	}

	log := cg.Log(1000)
	if !strings.Contains(log, `msg="runtime detected" runtime=cri-o`) || !strings.Contains(log, "resolvers=cri,proc") {
		t.Errorf("criguard --resolver auto did not pick the CRI verbose status chain (cri,proc) for cri-o%s", criguardLog(cg))
	}
}

// TestLabCRIO proves the lab's CRI-O runs a pod on each handler without criguard, in
// the cgroup the throttle cases expect.
func TestLabCRIO(t *testing.T) {
	crio := lab.CRIO(t)
	for _, name := range []string{"runc", "crun"} {
		t.Run(name, func(t *testing.T) {
			pod := lab.NewPod(t, "lab", "lab-ns")
			pod.RuntimeHandler = name
			podID := lab.RunPod(t, crio.Endpoint, pod)
			id := lab.StartContainer(t, crio.Endpoint, podID, pod, &lab.Container{
				Name: "sleeper", Command: []string{"sleep", "3600"},
			})
			got := lab.WaitContainerState(t, crio.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
			if !crio.Handlers[name].Created(id) {
				t.Errorf("%s did not create %s", name, id)
			}
			want := pod.CgroupParent() + "/crio-" + id
			if got.Info.RuntimeSpec.Linux.CgroupsPath != want {
				t.Errorf("cgroupsPath = %q, want %q", got.Info.RuntimeSpec.Linux.CgroupsPath, want)
			}
			assertInCgroup(t, got.Info.Pid, "blkio", want)
			if out := lab.Crictl(t, crio.Endpoint, "exec", "-s", id, "echo", "from-crio"); out != "from-crio" {
				t.Errorf("exec output = %q, want from-crio", out)
			}
		})
	}
}

// assertNoThrottle fails unless every blkio throttle file of dir is empty: no limit
// for any device.
func assertNoThrottle(t *testing.T, what, dir string) {
	t.Helper()
	for _, file := range []string{writeBPSFile, readBPSFile, writeIOPSFile, "blkio.throttle.read_iops_device"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s := strings.TrimSpace(string(data)); s != "" {
			t.Errorf("%s is throttled: %s/%s holds %q", what, dir, file, s)
		}
	}
}
