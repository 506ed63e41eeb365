//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/test/e2e/lab"
)

// hostilePolicy: rule "tenants" gives write 1 MiB/s and read 2 MiB/s; annotations are
// on, bounded, and may pick class "fast" (which would be looser).
func hostilePolicy(devicePath string) string {
	return fmt.Sprintf(`device "data" {
  path = %q
}

class "slow" {
  io {
    device    = "data"
    write_bps = "1MiB"
    read_bps  = "2MiB"
  }
}

class "fast" {
  io {
    device    = "data"
    write_bps = "500MiB"
  }
}

rule "tenants" {
  match {
    namespaces = ["tenant-*"]
  }
  class = "slow"
}

annotations {
  enabled       = true
  classes       = ["fast"]
  max_write_bps = "200MiB"
}
`, devicePath)
}

// TestHostilePodsContainerd attacks the policy through criguard in front of the real
// containerd, as a tenant would with the annotations they control, and reads the
// limits back from the cgroup files: nothing loosens the rule, only a stricter ask
// tightens it, and the keys not asked keep the rule's values.
func TestHostilePodsContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, hostilePolicy(ctrd.Root))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--reconcile-interval", "1s")
	ep := cg.Endpoint
	cases := []struct {
		name                string
		annotations         map[string]string
		wantWrite, wantRead uint64
	}{
		{"zero", map[string]string{"criguard.io/read-bps": "0"}, 1 * mib, 2 * mib},
		{"huge", map[string]string{"criguard.io/write-bps": "1000PiB"}, 1 * mib, 2 * mib},
		{"looser", map[string]string{"criguard.io/write-bps": "100MiB"}, 1 * mib, 2 * mib},
		{"stricter", map[string]string{"criguard.io/write-bps": "512KiB"}, 512 << 10, 2 * mib},
		{"class", map[string]string{"blockio.resources.beta.kubernetes.io/pod": "fast"}, 1 * mib, 2 * mib},
		{"unknown-class", map[string]string{"blockio.resources.beta.kubernetes.io/pod": "gold"}, 1 * mib, 2 * mib},
		{"container-level", map[string]string{"criguard.io/write-bps.hostile": "150MiB"}, 1 * mib, 2 * mib},
		{"garbage", map[string]string{"criguard.io/write-bps": "-1", "criguard.io/read-bps": strings.Repeat("9", 4096)}, 1 * mib, 2 * mib},
	}
	workers := map[string]*worker{}
	for _, c := range cases {
		w := &worker{pod: lab.NewPod(t, "hostile-"+c.name, "tenant-"+c.name), volume: lab.DiskDir(t)}
		w.pod.Annotations = c.annotations
		w.podID = lab.RunPod(t, ep, w.pod)
		w.id = w.addContainer(t, ep, "hostile", w.volume)
		w.dir = lab.BlkioDir(t, w.pod.CgroupParent()+"/"+w.id)
		workers[c.name] = w
	}
	// Several reconcile passes: no pass may loosen what the start applied.
	time.Sleep(2500 * time.Millisecond)
	for _, c := range cases {
		w := workers[c.name]
		assertThrottle(t, cg, c.name+": write", w.dir, writeBPSFile, dev, c.wantWrite)
		assertThrottle(t, cg, c.name+": read", w.dir, readBPSFile, dev, c.wantRead)
	}
	// Measured, not only read back: the huge ask runs at the rule's 1 MiB/s.
	measure(t, cg, ep, workers["huge"].id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	// Each ignored annotation is logged once per container, not once per pass.
	if n := strings.Count(cg.Log(2000), `criguard.io/write-bps=\"1000PiB\" ignored`); n != 1 {
		t.Errorf("the ignored annotation was logged %d times over several passes, want once%s", n, criguardLog(cg))
	}
}

// TestRestartKeepsLimitsContainerd: restarting criguard on a broken policy, or with
// the policy file gone, leaves every running container's limit in place.
func TestRestartKeepsLimitsContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--reconcile-interval", "1s")
	w := startWorker(t, cg.Endpoint, "throttled-restart", "kept")
	assertThrottle(t, cg, "after start", w.dir, writeBPSFile, dev, 1*mib)

	t.Run("broken", func(t *testing.T) {
		cg.Stop(t, 5*time.Second)
		if err := os.WriteFile(policyPath, []byte("rule \"throttled\" {\n  class = \n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cg.Start(t)
		waitLog(t, cg, 0, "running the last good policy", 10*time.Second)
		time.Sleep(2500 * time.Millisecond) // the pass at start and two more
		assertThrottle(t, cg, "after a restart on a broken policy", w.dir, writeBPSFile, dev, 1*mib)
		measure(t, cg, cg.Endpoint, w.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	})
	t.Run("missing", func(t *testing.T) {
		cg.Stop(t, 5*time.Second)
		if err := os.Remove(policyPath); err != nil {
			t.Fatal(err)
		}
		cg.Start(t)
		time.Sleep(2500 * time.Millisecond)
		assertThrottle(t, cg, "after a restart with no policy file", w.dir, writeBPSFile, dev, 1*mib)
	})
}

// TestOwnershipContainerd: a limit another tool wrote survives reconcile, while
// criguard's own limit is lifted when a reload drops its rule.
func TestOwnershipContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--reconcile-interval", "1s")
	foreign := startWorker(t, cg.Endpoint, "free-owner", "foreign")
	own := startWorker(t, cg.Endpoint, "throttled-owner", "own")
	assertThrottle(t, cg, "criguard's own limit", own.dir, writeBPSFile, dev, 1*mib)
	// What a runtime's blockio class, an NRI plugin or an operator would write.
	lab.SetThrottle(t, foreign.dir, writeBPSFile, dev, 5*mib)
	time.Sleep(2500 * time.Millisecond)
	assertThrottle(t, cg, "a foreign limit after reconcile", foreign.dir, writeBPSFile, dev, 5*mib)

	writePolicy(t, policyPath, strings.Replace(throttlePolicy(ctrd.Root, "1MiB"), `namespaces = ["throttled-*"]`, `namespaces = ["nobody"]`, 1))
	waitThrottle(t, cg, "criguard's own limit after its rule went", own.dir, writeBPSFile, dev, 0, 5*time.Second)
	assertThrottle(t, cg, "the foreign limit after the reload", foreign.dir, writeBPSFile, dev, 5*mib)

	// The rule back, then an operator tightens the limit by hand: stricter than the
	// policy, so reconcile keeps it; loosened by hand, it is repaired.
	writePolicy(t, policyPath, throttlePolicy(ctrd.Root, "1MiB"))
	waitThrottle(t, cg, "criguard's own limit after its rule came back", own.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
	lab.SetThrottle(t, own.dir, writeBPSFile, dev, 512*1024)
	time.Sleep(2500 * time.Millisecond)
	assertThrottle(t, cg, "a limit tightened by hand, after reconcile", own.dir, writeBPSFile, dev, 512*1024)
	lab.SetThrottle(t, own.dir, writeBPSFile, dev, 8*mib)
	waitThrottle(t, cg, "a limit loosened by hand, after reconcile", own.dir, writeBPSFile, dev, 1*mib, 5*time.Second)
}

// TestImageRuleContainerd: a rule on images holds after reconcile passes (containerd
// lists only the image's digest) and after a restart of criguard.
func TestImageRuleContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, fmt.Sprintf(`class "slow" {
  io {
    device    = %q
    write_bps = "1MiB"
  }
}
rule "by-image" {
  match {
    images = ["criguard.test/e2e/busybox*"]
  }
  class = "slow"
}
`, ctrd.Root))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--reconcile-interval", "1s")
	w := startWorker(t, cg.Endpoint, "images", "by-image")
	assertThrottle(t, cg, "after start", w.dir, writeBPSFile, dev, 1*mib)
	time.Sleep(3500 * time.Millisecond) // three passes
	assertThrottle(t, cg, "after three reconcile passes", w.dir, writeBPSFile, dev, 1*mib)
	cg.Restart(t)
	time.Sleep(2500 * time.Millisecond)
	assertThrottle(t, cg, "after a restart", w.dir, writeBPSFile, dev, 1*mib)
	lab.SetThrottle(t, w.dir, writeBPSFile, dev, 0)
	waitThrottle(t, cg, "drift repaired after a restart, by image", w.dir, writeBPSFile, dev, 1*mib, 3*time.Second)
}

// TestMissingDeviceContainerd: one policy for every node; a class whose other disk
// this node lacks still throttles the disk it has.
func TestMissingDeviceContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, fmt.Sprintf(`class "two-disks" {
  io {
    device    = "/dev/criguard-e2e-no-such-disk"
    write_bps = "1MiB"
  }
  io {
    device    = %q
    write_bps = "1MiB"
  }
}
rule "all" {
  match {
    namespaces = ["throttled-*"]
  }
  class = "two-disks"
}
`, ctrd.Root))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket)
	w := startWorker(t, cg.Endpoint, "throttled-devices", "half")
	assertThrottle(t, cg, "the disk this node has", w.dir, writeBPSFile, dev, 1*mib)
	measure(t, cg, cg.Endpoint, w.id, write3MiB, "48+0 records out", 2300*time.Millisecond, 6*time.Second)
	if log := cg.Log(200); !strings.Contains(log, "criguard-e2e-no-such-disk") {
		t.Errorf("the missing device is not reported%s", criguardLog(cg))
	}
}

// TestPodBudgetAfterRestartContainerd: a pod budget comes back after a restart of
// criguard whatever the resolver chain (v1 here: the budget is split among the
// pod's containers).
func TestPodBudgetAfterRestartContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	first := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket)
	w := startWorker(t, first.Endpoint, "shared-restart", "first")
	second := w.addContainer(t, first.Endpoint, "second", w.volume)
	secondDir := lab.BlkioDir(t, w.pod.CgroupParent()+"/"+second)
	assertThrottle(t, first, "first's share", w.dir, writeBPSFile, dev, mib/2)
	first.Stop(t, 5*time.Second)
	for _, resolver := range []string{"cri", "containerd", "proc"} {
		t.Run(resolver, func(t *testing.T) {
			lab.SetThrottle(t, w.dir, writeBPSFile, dev, 0)
			lab.SetThrottle(t, secondDir, writeBPSFile, dev, 0)
			cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
				"--resolver", resolver)
			waitThrottle(t, cg, "first's share after a restart", w.dir, writeBPSFile, dev, mib/2, 10*time.Second)
			waitThrottle(t, cg, "second's share after a restart", secondDir, writeBPSFile, dev, mib/2, 10*time.Second)
			cg.Stop(t, 5*time.Second)
		})
	}
}

// TestFirstInstructionContainerd: the throttle is in the cgroup before the
// container's first instruction, on containerd and on Docker.
func TestFirstInstruction(t *testing.T) {
	run := func(t *testing.T, endpoint, dataRoot string, args ...string) {
		dev := lab.WholeDisk(t, dataRoot)
		policyPath := newPolicyFile(t, throttlePolicy(dataRoot, "1MiB"))
		cg := lab.Criguard(t, endpoint, append([]string{"--policy", policyPath}, args...)...)
		pod := lab.NewPod(t, "first", "throttled-first")
		podID := lab.RunPod(t, cg.Endpoint, pod)
		id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "first",
			Command: []string{"sh", "-c", "cat /sys/fs/cgroup/blkio/" + writeBPSFile + "; echo end-of-first; sleep 3600"}})
		want := fmt.Sprintf("%s %d", dev, 1*mib)
		deadline := time.Now().Add(20 * time.Second)
		var logs string
		for time.Now().Before(deadline) {
			logs = lab.Crictl(t, cg.Endpoint, "logs", id)
			if strings.Contains(logs, "end-of-first") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(logs, want) {
			t.Fatalf("the container's first command read %q from its blkio.throttle.write_bps_device, want %q%s", logs, want, criguardLog(cg))
		}
	}
	t.Run("containerd", func(t *testing.T) {
		ctrd := lab.Containerd(t)
		run(t, ctrd.Endpoint, ctrd.Root, "--containerd-address", ctrd.Socket)
	})
	t.Run("docker", func(t *testing.T) {
		dock := lab.Docker(t)
		run(t, dock.Endpoint, dock.DataRoot, "--docker-endpoint", dock.DockerEndpoint)
	})
}
