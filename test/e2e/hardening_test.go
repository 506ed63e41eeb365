//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
	"github.com/criguard/criguard/translate"
)

// The hardening tests of issue 21: what an adversarial review broke, proved fixed on
// the real runtime and the real cgroup files of this host.

// reloadResourcesPolicy gives the container named "reloaded" in reload-* namespaces a
// CPU weight and ceiling and a pids cap.
func reloadResourcesPolicy(weight int, cpuMax string, pids int) string {
	return fmt.Sprintf(`class "reloaded" {
  cpu {
    weight = %d
    max    = %q
  }
  pids {
    max = %d
  }
}

rule "reloaded" {
  match {
    namespaces = ["reload-*"]
    containers = ["reloaded"]
  }
  class = "reloaded"
}
`, weight, cpuMax, pids)
}

// Finding 12: a reload that tightens a class brings running containers' cpu and pids
// to it within the pass the reload starts, not at kubelet's next update. The interval
// is an hour: only the pass at start and the reload's own pass run.
func TestHardeningReloadReachesRunningContainers(t *testing.T) {
	runtimes := []struct {
		name string
		opts []lab.ContainerdOption
	}{
		{"containerd", nil},
		{"containerd2", []lab.ContainerdOption{lab.WithContainerd2()}},
	}
	for _, rt := range runtimes {
		t.Run(rt.name, func(t *testing.T) {
			ctrd := lab.Containerd(t, rt.opts...)
			policyPath := newPolicyFile(t, reloadResourcesPolicy(100, "500m", 40))
			cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
				"--containerd-address", ctrd.Socket, "--reconcile-interval", "1h")
			pod := lab.NewPod(t, "reload", "reload-"+rt.name)
			podID := lab.RunPod(t, cg.Endpoint, pod)
			// kubelet's resources for a one-CPU request with no limit.
			id := startWithResources(t, cg.Endpoint, podID, pod, &lab.Container{Name: "reloaded",
				Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}},
				&runtimeapi.LinuxContainerResources{CpuShares: 1024})
			rel := lab.ContainerCgroup(t, cg.Endpoint, pod, id)
			cpuDir, pidsDir := controllerDir(t, "cpu", rel), controllerDir(t, "pids", rel)
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", translate.CPUSharesFromWeight(100))
			assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 50000)
			assertCgroupNumber(t, cg, pidsDir, "pids.max", 40)

			mark := logMark(t, cg)
			writePolicy(t, policyPath, reloadResourcesPolicy(20, "250m", 30))
			waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
			reloaded := time.Now()
			// The pass the reload starts is the first to end after it.
			waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
			t.Logf("%s: the reload's pass ended %s after the reload was logged", rt.name, time.Since(reloaded).Round(10*time.Millisecond))
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", translate.CPUSharesFromWeight(20))
			assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 25000)
			assertCgroupNumber(t, cg, pidsDir, "pids.max", 30)
			if log := cg.Log(400); strings.Contains(log, "throttle not applied") {
				t.Errorf("criguard logged a failed apply around the reload%s", criguardLog(cg))
			}

			// A reload that loosens the class never loosens what runs: the runtime is only
			// ever asked to tighten (kubelet's next update or a restart brings the looser one).
			mark = logMark(t, cg)
			writePolicy(t, policyPath, reloadResourcesPolicy(100, "500m", 30))
			waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
			waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", translate.CPUSharesFromWeight(20))
			assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 25000)
		})
	}
}

// assertCgroupNumber fails the test unless a one-number cgroup file holds want now.
func assertCgroupNumber(t *testing.T, cg *lab.CriguardProcess, dir, file string, want uint64) {
	t.Helper()
	if got := readCgroupNumber(t, dir, file); got != want {
		t.Fatalf("%s/%s = %d, want %d%s", dir, file, got, want, criguardLog(cg))
	}
}

// Finding 13: a throttled container whose command exits at once is the normal
// "vanished" case, whichever way the race with its start goes: no ERROR "throttle not
// applied; will retry", no failed throttle counted. A long-running container under the
// same rule shows that the counters count.
func TestHardeningExitAtOnce(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	metricsAddr := freeAddr(t)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB")),
		"--resolver", "auto", "--containerd-address", ctrd.Socket,
		"--metrics-addr", metricsAddr, "--reconcile-interval", "1s")

	control := startWorker(t, cg.Endpoint, "throttled-exit", "control")
	assertThrottle(t, cg, "the long-running container", control.dir, writeBPSFile, dev, 1*mib)

	// Several, so that the exit lands on each side of criguard's post-start work.
	const quick = 6
	var ids []string
	for i := range quick {
		pod := lab.NewPod(t, fmt.Sprintf("quick-%d", i), "throttled-exit")
		podID := lab.RunPod(t, cg.Endpoint, pod)
		ids = append(ids, lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "quick", Command: []string{"true"}}))
	}
	for _, id := range ids {
		if st := lab.WaitContainerState(t, cg.Endpoint, id, "CONTAINER_EXITED", 60*time.Second); st.Status.ExitCode != 0 {
			t.Fatalf("container %s exited %d, want 0", id, st.Status.ExitCode)
		}
	}
	// Two reconcile passes after the last exit: a retry would have shown by then.
	mark := logMark(t, cg)
	waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
	time.Sleep(2500 * time.Millisecond)

	log, err := os.ReadFile(cg.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	vanished := 0
	for _, line := range strings.Split(string(log), "\n") {
		for _, id := range ids {
			if !strings.Contains(line, id) {
				continue
			}
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "throttle not applied") {
				t.Errorf("criguard logged an error for the container %s that exited at once:\n%s", id, line)
			}
			if strings.Contains(line, "vanished") {
				vanished++
			}
		}
	}
	page := scrapeMetrics(t, metricsAddr)
	failed, _ := optionalSample(page, "criguard_throttles_total", `result="failed",scope="container"`)
	applied := sampleValue(t, page, "criguard_throttles_total", `result="applied",scope="container"`)
	t.Logf("%d containers exited at once: %d logged as vanished (the rest exited after criguard's post-start work); throttles applied %.0f, failed %.0f",
		quick, vanished, applied, failed)
	if failed != 0 {
		t.Errorf("criguard_throttles_total{result=\"failed\",scope=\"container\"} = %.0f, want 0%s", failed, criguardLog(cg))
	}
	if applied < 1 {
		t.Errorf("criguard_throttles_total{result=\"applied\",scope=\"container\"} = %.0f, want at least the long-running container's%s", applied, criguardLog(cg))
	}
	assertThrottle(t, cg, "the long-running container at the end", control.dir, writeBPSFile, dev, 1*mib)
}

// Finding 7: a limit another tool wrote, looser than the policy's, is overwritten
// while the rule matches and put back when it no longer does (across a restart of
// criguard: the record is on disk), where nothing stood criguard's limit is lifted.
func TestHardeningForeignLimitPutBack(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	unmatched := strings.Replace(throttlePolicy(ctrd.Root, "1MiB"), `["throttled-*"]`, `["nobody-*"]`, 1)
	policyPath := newPolicyFile(t, unmatched)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--reconcile-interval", "1s")
	w := startWorker(t, cg.Endpoint, "throttled-foreign", "foreign")
	assertThrottle(t, cg, "before any rule matches", w.dir, writeBPSFile, dev, 0)
	// What a runtime's blockio class, an NRI plugin or an operator would write.
	lab.SetThrottle(t, w.dir, writeBPSFile, dev, 5*mib)

	writePolicy(t, policyPath, throttlePolicy(ctrd.Root, "1MiB"))
	waitThrottle(t, cg, "the stricter policy over the foreign limit", w.dir, writeBPSFile, dev, 1*mib, 30*time.Second)
	waitThrottle(t, cg, "the policy's read limit, where nothing stood", w.dir, readBPSFile, dev, 2*mib, 30*time.Second)

	// The record of what stood before survives a restart.
	cg.Restart(t)
	time.Sleep(2500 * time.Millisecond) // the pass at start and more
	assertThrottle(t, cg, "after a restart", w.dir, writeBPSFile, dev, 1*mib)

	writePolicy(t, policyPath, unmatched)
	waitThrottle(t, cg, "the foreign limit put back when the rule stopped matching", w.dir, writeBPSFile, dev, 5*mib, 30*time.Second)
	waitThrottle(t, cg, "criguard's read limit lifted", w.dir, readBPSFile, dev, 0, 30*time.Second)
	time.Sleep(2500 * time.Millisecond) // later passes leave both as they are
	assertThrottle(t, cg, "the foreign limit, passes later", w.dir, writeBPSFile, dev, 5*mib)
	assertThrottle(t, cg, "no read limit, passes later", w.dir, readBPSFile, dev, 0)
}

// Finding 3: criguard started on an emptied policy file (a save cut short) does not
// lift the limits it wrote: beside a good last good copy it runs that copy (and so
// still repairs drift); beside an empty copy it keeps hands off (writes nothing,
// resets nothing).
func TestHardeningEmptyPolicyAtStart(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	good := throttlePolicy(ctrd.Root, "1MiB")
	policyPath := newPolicyFile(t, good)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--reconcile-interval", "1s")
	w := startWorker(t, cg.Endpoint, "throttled-empty", "kept")
	assertThrottle(t, cg, "after start", w.dir, writeBPSFile, dev, 1*mib)
	lastGood := filepath.Join(cg.StateDir, "last-good-policy.hcl")
	if kept, err := os.ReadFile(lastGood); err != nil || string(kept) != good {
		t.Fatalf("criguard kept no last good copy of the policy at %s (%v)", lastGood, err)
	}

	t.Run("last-good", func(t *testing.T) {
		cg.Stop(t, 15*time.Second)
		if err := os.WriteFile(policyPath, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mark := logMark(t, cg)
		cg.Start(t)
		waitLog(t, cg, mark, "criguard serving", 30*time.Second)
		time.Sleep(3 * time.Second) // the pass at start and two more
		assertThrottle(t, cg, "after a restart on an empty policy", w.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "the read limit after a restart on an empty policy", w.dir, readBPSFile, dev, 2*mib)
		waitLog(t, cg, mark, "running the last good policy", time.Second)
		// The last good copy is in force, not only left alone: drift is repaired.
		lab.SetThrottle(t, w.dir, writeBPSFile, dev, 0)
		waitThrottle(t, cg, "drift repaired under the last good copy", w.dir, writeBPSFile, dev, 1*mib, 30*time.Second)
	})

	t.Run("empty-last-good", func(t *testing.T) {
		cg.Stop(t, 15*time.Second)
		// A broken file beside an empty copy: what a power cut could leave.
		if err := os.WriteFile(policyPath, []byte("rule \"throttled\" {\n  class = \n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lastGood, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mark := logMark(t, cg)
		cg.Start(t)
		waitLog(t, cg, mark, "criguard serving", 30*time.Second)
		time.Sleep(3 * time.Second) // three intervals
		assertThrottle(t, cg, "after a restart on a broken policy and an empty last good copy", w.dir, writeBPSFile, dev, 1*mib)
		assertThrottle(t, cg, "the read limit, the same", w.dir, readBPSFile, dev, 2*mib)
		waitLog(t, cg, mark, "hands off", time.Second)
		// Hands off: criguard writes nothing, so a change by hand stays.
		lab.SetThrottle(t, w.dir, writeBPSFile, dev, 3*mib)
		time.Sleep(2500 * time.Millisecond)
		assertThrottle(t, cg, "a change by hand while hands off", w.dir, writeBPSFile, dev, 3*mib)
	})
}
