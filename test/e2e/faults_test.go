//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// reconcileInterval is criguard's --reconcile-interval in the fault tests.
const reconcileInterval = 2 * time.Second

// logMark is a position in criguard's log: waitLog looks only at what came after it.
func logMark(t *testing.T, cg *lab.CriguardProcess) int64 {
	t.Helper()
	fi, err := os.Stat(cg.LogPath)
	if err != nil {
		t.Fatalf("criguard log: %v", err)
	}
	return fi.Size()
}

// waitLog waits until criguard's log, after mark, contains want, and returns that part.
func waitLog(t *testing.T, cg *lab.CriguardProcess, mark int64, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(cg.LogPath)
		if err != nil {
			t.Fatalf("criguard log: %v", err)
		}
		since := string(data[min(mark, int64(len(data))):])
		if strings.Contains(since, want) {
			return since
		}
		if time.Now().After(deadline) {
			t.Fatalf("criguard did not log %q within %s; it logged:\n%s", want, timeout, since)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitThrottle fails the test unless the file reaches want within timeout, and
// returns how long it took.
func waitThrottle(t *testing.T, cg *lab.CriguardProcess, what, dir, file, dev string, want uint64, timeout time.Duration) time.Duration {
	t.Helper()
	took, err := lab.WaitThrottle(dir, file, dev, want, timeout)
	if err != nil {
		t.Fatalf("%s: %v%s", what, err, criguardLog(cg))
	}
	t.Logf("%s: %s %d after %s", what, file, want, took.Round(10*time.Millisecond))
	return took
}

// TestFaultsContainerd breaks things around a running criguard in front of the real
// containerd and checks that the limits survive: drift, SIGKILL and restart, policy
// edit, a broken policy, its fix, and containerd restarting underneath.
func TestFaultsContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	metricsAddr := freeAddr(t)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--metrics-addr", metricsAddr,
		"--reconcile-interval", reconcileInterval.String())
	ep := cg.Endpoint

	survivor := startWorker(t, ep, "throttled-faults", "survivor")
	assertThrottle(t, cg, "survivor after start", survivor.dir, writeBPSFile, dev, 1*mib)

	t.Run("drift", func(t *testing.T) {
		fixed := driftFixed(t, metricsAddr)
		lab.SetThrottle(t, survivor.dir, writeBPSFile, dev, 0)
		// One interval, plus the pass itself and the poll. (The watch on the limit
		// files usually repairs it sooner: TestFaultsLiftRepairedAtOnce.)
		waitThrottle(t, cg, "drift repaired", survivor.dir, writeBPSFile, dev, 1*mib, reconcileInterval+time.Second)
		// Repaired by criguard, which saw the reset: not a write that never happened.
		waitDriftFixed(t, metricsAddr, fixed+1)
	})

	t.Run("behind-back-live", func(t *testing.T) {
		// Started on containerd's own socket while criguard runs: no hook saw it, the
		// next pass must.
		w := startWorker(t, ctrd.Endpoint, "throttled-faults", "sneaky")
		waitThrottle(t, cg, "started behind a running criguard's back", w.dir, writeBPSFile, dev, 1*mib, reconcileInterval+time.Second)
	})

	// While criguard is dead the survivor drifts, and a matched container starts on
	// containerd's own socket. (Started here, not in the subtest, so that it lives on
	// for the steps after.)
	cg.Kill(t)
	lab.SetThrottle(t, survivor.dir, writeBPSFile, dev, 0)
	behind := startWorker(t, ctrd.Endpoint, "throttled-faults", "behind-back")
	assertThrottle(t, cg, "started behind criguard's back", behind.dir, writeBPSFile, dev, 0)

	cg.Start(t)

	t.Run("sigkill-restart", func(t *testing.T) {
		// The pass at start-up fixes both: sooner than the first tick, one interval on.
		startup := reconcileInterval - 500*time.Millisecond
		waitThrottle(t, cg, "survivor after restart", survivor.dir, writeBPSFile, dev, 1*mib, startup)
		waitThrottle(t, cg, "behind-back after restart", behind.dir, writeBPSFile, dev, 1*mib, startup)
		assertThrottle(t, cg, "behind-back read limit", behind.dir, readBPSFile, dev, 2*mib)
		measure(t, cg, ep, behind.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	})
	t.Run("policy-edit", func(t *testing.T) {
		writePolicy(t, policyPath, throttlePolicy(ctrd.Root, "2MiB"))
		waitThrottle(t, cg, "survivor follows the edit", survivor.dir, writeBPSFile, dev, 2*mib, 5*time.Second)
		waitThrottle(t, cg, "behind-back follows the edit", behind.dir, writeBPSFile, dev, 2*mib, 5*time.Second)
		measure(t, cg, ep, survivor.id, write3MiB, "48+0 records out", 1100*time.Millisecond, 4*time.Second)
	})

	t.Run("policy-broken", func(t *testing.T) {
		mark := logMark(t, cg)
		// Written in place, half a policy: what a careless edit leaves.
		broken := strings.Replace(throttlePolicy(ctrd.Root, "1MiB"), `class "few-iops" {`, `class "few-iops" {{`, 1)
		if err := os.WriteFile(policyPath, []byte(broken), 0o644); err != nil {
			t.Fatalf("write broken policy: %v", err)
		}
		logged := waitLog(t, cg, mark, "policy reload refused", 5*time.Second)
		if !strings.Contains(logged, "policy.hcl:") {
			t.Errorf("the refusal does not name the file and line:\n%s", logged)
		}
		// A full interval later the last good policy (2 MiB/s) is still what holds.
		time.Sleep(reconcileInterval + 500*time.Millisecond)
		assertThrottle(t, cg, "survivor under a broken policy", survivor.dir, writeBPSFile, dev, 2*mib)
		assertThrottle(t, cg, "behind-back under a broken policy", behind.dir, writeBPSFile, dev, 2*mib)
		if !cg.Running() {
			t.Fatalf("criguard exited on a broken policy%s", criguardLog(cg))
		}
		lab.Crictl(t, ep, "ps")
	})

	t.Run("policy-fixed", func(t *testing.T) {
		mark := logMark(t, cg)
		writePolicy(t, policyPath, throttlePolicy(ctrd.Root, "1MiB"))
		waitThrottle(t, cg, "survivor after the fix", survivor.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
		waitThrottle(t, cg, "behind-back after the fix", behind.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
		waitLog(t, cg, mark, "policy reloaded", time.Second)
	})

	t.Run("policy-unmatch", func(t *testing.T) {
		// The rule no longer matches: the running containers are reset, then matched again.
		unmatched := strings.Replace(throttlePolicy(ctrd.Root, "1MiB"), `["throttled-*"]`, `["nobody-*"]`, 1)
		writePolicy(t, policyPath, unmatched)
		waitThrottle(t, cg, "survivor reset", survivor.dir, writeBPSFile, dev, 0, 5*time.Second)
		waitThrottle(t, cg, "survivor read limit reset", survivor.dir, readBPSFile, dev, 0, time.Second)
		waitThrottle(t, cg, "behind-back reset", behind.dir, writeBPSFile, dev, 0, 5*time.Second)
		measure(t, cg, ep, survivor.id, write3MiB, "48+0 records out", 0, time.Second)

		writePolicy(t, policyPath, throttlePolicy(ctrd.Root, "1MiB"))
		waitThrottle(t, cg, "survivor matched again", survivor.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
		waitThrottle(t, cg, "behind-back matched again", behind.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
	})

	t.Run("containerd-restart", func(t *testing.T) {
		pid := cg.Pid()
		ctrd.StopDaemon(t)

		start := time.Now()
		_, err := lab.CrictlErr(t, ep, "ps")
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "Unavailable") {
			t.Fatalf("crictl ps through criguard with containerd down: err = %v, want Unavailable%s", err, criguardLog(cg))
		}
		t.Logf("crictl ps through criguard failed after %s: %s", took.Round(10*time.Millisecond), stderrOf(err))
		if took > 3*time.Second {
			t.Errorf("crictl ps through criguard took %s to fail with containerd down, want under 3s", took)
		}
		client := lab.RuntimeClient(t, ep)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start = time.Now()
		_, err = client.Version(ctx, &runtimeapi.VersionRequest{})
		if status.Code(err) != codes.Unavailable || time.Since(start) > 3*time.Second {
			t.Errorf("Version through criguard with containerd down: %v after %s, want Unavailable at once", err, time.Since(start))
		}
		// The kernel keeps the limits; nobody may have reset them meanwhile.
		assertThrottle(t, cg, "survivor while containerd is down", survivor.dir, writeBPSFile, dev, 1*mib)

		ctrd.StartDaemon(t)
		start = time.Now()
		for {
			out, err := lab.CrictlErr(t, ep, "ps", "-q", "--state", "running")
			if err == nil {
				if !strings.Contains(out, survivor.id) || !strings.Contains(out, behind.id) {
					t.Fatalf("after containerd's restart, running containers through criguard = %q, want %s and %s", out, survivor.id, behind.id)
				}
				break
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("crictl ps through criguard still fails 20s after containerd came back: %v%s", err, criguardLog(cg))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("calls through criguard work again %s after containerd answered", time.Since(start).Round(10*time.Millisecond))
		if !cg.Running() || cg.Pid() != pid {
			t.Fatalf("criguard restarted or died while containerd restarted (pid %d before)%s", pid, criguardLog(cg))
		}
		// Past one more pass, the limits of the surviving containers are still there.
		time.Sleep(reconcileInterval + 500*time.Millisecond)
		assertThrottle(t, cg, "survivor after containerd's restart", survivor.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "behind-back after containerd's restart", behind.dir, writeBPSFile, dev, 1*mib)
		measure(t, cg, ep, survivor.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	})
}

// TestFaultsEventStream restarts containerd 2 (1.6 has no GetContainerEvents) under
// criguard: a subscriber's event stream must end with an error, not hang or end
// cleanly, so that kubelet subscribes again; the new subscription then gets events, and
// a throttled container keeps its limits.
func TestFaultsEventStream(t *testing.T) {
	ctrd := lab.Containerd(t, lab.WithContainerd2())
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--metrics-addr", "127.0.0.1:0", "--reconcile-interval", reconcileInterval.String())
	ep := cg.Endpoint
	client := lab.RuntimeClient(t, ep)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents through criguard: %v", err)
	}
	events, ended := receiveEvents(stream)
	// The survivor's start event proves the stream is live up to containerd before
	// containerd stops.
	survivor := startWorker(t, ep, "throttled-events", "survivor")
	assertThrottle(t, cg, "survivor on containerd 2", survivor.dir, writeBPSFile, dev, 1*mib)
	waitStarted(t, events, survivor.id)

	ctrd.StopDaemon(t)
	select {
	case err := <-ended:
		t.Logf("event stream ended with: %v", err)
		if code := status.Code(err); code == codes.OK || code == codes.Canceled {
			t.Errorf("event stream ended with %v (code %s), want an error such as Unavailable so that kubelet subscribes again", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("event stream still open 10s after containerd stopped%s", criguardLog(cg))
	}
	assertThrottle(t, cg, "survivor while containerd is down", survivor.dir, writeBPSFile, dev, 1*mib)

	ctrd.StartDaemon(t)
	var again runtimeapi.RuntimeService_GetContainerEventsClient
	deadline := time.Now().Add(20 * time.Second)
	for {
		again, err = client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscribing again through criguard still fails 20s after containerd came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	events, _ = receiveEvents(again)
	later := startWorker(t, ep, "throttled-events", "later")
	assertThrottle(t, cg, "container started after containerd's restart", later.dir, writeBPSFile, dev, 1*mib)
	waitStarted(t, events, later.id)
	assertThrottle(t, cg, "survivor after containerd's restart", survivor.dir, writeBPSFile, dev, 1*mib)
}

// receiveEvents reads a CRI event stream until it ends: the events, then the error
// that ended it.
func receiveEvents(stream runtimeapi.RuntimeService_GetContainerEventsClient) (<-chan *runtimeapi.ContainerEventResponse, <-chan error) {
	events := make(chan *runtimeapi.ContainerEventResponse, 64)
	ended := make(chan error, 1)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			events <- ev
		}
	}()
	return events, ended
}

// waitStarted waits for the CONTAINER_STARTED event of container id.
func waitStarted(t *testing.T, events <-chan *runtimeapi.ContainerEventResponse, id string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the event stream ended before CONTAINER_STARTED of %s", id)
			}
			if ev.ContainerId == id && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
				return
			}
		case <-timeout:
			t.Fatalf("no CONTAINER_STARTED event for %s within 20s", id)
		}
	}
}

// TestFaultsLiftRepairedAtOnce lifts a running container's limit by hand with
// passes an hour apart: only the watch on the cgroup's limit files can bring it
// back, and it must within seconds.
func TestFaultsLiftRepairedAtOnce(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	metricsAddr := freeAddr(t)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB")),
		"--resolver", "auto", "--containerd-address", ctrd.Socket, "--metrics-addr", metricsAddr,
		"--reconcile-interval", "1h")
	w := startWorker(t, cg.Endpoint, "throttled-faults", "lifted")
	assertThrottle(t, cg, "after start", w.dir, writeBPSFile, dev, 1*mib)
	fixed := driftFixed(t, metricsAddr)
	for round := range 3 {
		lab.SetThrottle(t, w.dir, writeBPSFile, dev, 0)
		took := waitThrottle(t, cg, fmt.Sprintf("lift %d repaired", round+1), w.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
		t.Logf("lift %d repaired after %s", round+1, took.Round(time.Millisecond))
		waitDriftFixed(t, metricsAddr, fixed+float64(round+1))
	}
}

// driftFixed is criguard_reconcile_drift_fixed_total now.
func driftFixed(t *testing.T, metricsAddr string) float64 {
	t.Helper()
	return sampleValue(t, scrapeMetrics(t, metricsAddr), "criguard_reconcile_drift_fixed_total", "")
}

// waitDriftFixed waits until criguard has counted want repairs (the count follows
// the pass's writes).
func waitDriftFixed(t *testing.T, metricsAddr string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := driftFixed(t, metricsAddr)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("criguard_reconcile_drift_fixed_total = %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
