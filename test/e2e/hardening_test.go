//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/test/e2e/lab"
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
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(100))
			assertCgroupNumber(t, cg, cpuDir, "cpu.cfs_quota_us", 50000)
			assertCgroupNumber(t, cg, pidsDir, "pids.max", 40)

			mark := logMark(t, cg)
			writePolicy(t, policyPath, reloadResourcesPolicy(20, "250m", 30))
			waitLog(t, cg, mark, "policy reloaded", 30*time.Second)
			reloaded := time.Now()
			// The pass the reload starts is the first to end after it.
			waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
			t.Logf("%s: the reload's pass ended %s after the reload was logged", rt.name, time.Since(reloaded).Round(10*time.Millisecond))
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(20))
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
			assertCgroupNumber(t, cg, cpuDir, "cpu.shares", cgroup.CPUSharesFromWeight(20))
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

// Finding 6, the policy: values the kernel cannot hold are refused by `criguard check`
// (the real binary), each naming the file, the line and the kernel's bound: a pids.max
// above PID_MAX_LIMIT (runc's write would fail and the container not be created), a
// v1 IOPS limit above 32 bits (the kernel would keep 100) and the bps that is the
// kernel's "no limit" (it reads back as nothing and would be rewritten every pass).
// Finding 6, on a running container: an annotation asking such a value is ignored
// and logged, and the rule's limit stays, while a valid ask under the same policy
// counts.
func TestHardeningKernelBounds(t *testing.T) {
	t.Run("check", func(t *testing.T) {
		dir := t.TempDir()
		cases := []struct {
			name, class, line, bound string
		}{
			{"pids", "  pids {\n    max = 5000000\n  }", "line 3:", "at most 4194304 (the kernel's PID_MAX_LIMIT)"},
			{"write_iops", "  io {\n    device     = \"data\"\n    write_iops = 4294967396\n  }", "line 8:", "above 4294967295, the most the kernel holds"},
			{"write_bps", "  io {\n    device    = \"data\"\n    write_bps = 18446744073709551615\n  }", "line 8:", "the kernel's \"no limit\"; a limit is at most 18446744073709551614"},
		}
		for _, c := range cases {
			path := filepath.Join(dir, c.name+".hcl")
			text := fmt.Sprintf("class \"huge\" {\n%s\n}\n\nrule \"huge\" {\n  match {\n    namespaces = [\"huge\"]\n  }\n  class = \"huge\"\n}\n", c.class)
			if c.name != "pids" {
				// Four lines before the class: the value is on line 8.
				text = "device \"data\" {\n  path = \"/var/lib\"\n}\n\n" + text
			}
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Getenv("CRIGUARD_BIN"), "check", path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Errorf("criguard check %s: %v, want a non-zero exit; it printed:\n%s\npolicy:\n%s", c.name, err, out, text)
				continue
			}
			where := "on " + path + " " + c.line
			for _, want := range []string{where, c.bound} {
				if !strings.Contains(string(out), want) {
					t.Errorf("criguard check %s (exit %d) does not say %q:\n%s\npolicy:\n%s", c.name, exit.ExitCode(), want, out, text)
				}
			}
			t.Logf("criguard check refused %s with exit %d:\n%s", c.name, exit.ExitCode(), out)
		}
	})

	t.Run("annotation", func(t *testing.T) {
		ctrd := lab.Containerd(t)
		dev := lab.WholeDisk(t, ctrd.Root)
		policyText := fmt.Sprintf(`device "data" {
  path = %q
}

class "few-iops" {
  io {
    device     = "data"
    write_iops = 200
  }
}

rule "iops" {
  match {
    namespaces = ["bounds-*"]
  }
  class = "few-iops"
}

# allow_loosen and the largest max_write_iops the kernel allows: only the kernel's
# bound stands between the ask and the cgroup file.
annotations {
  enabled        = true
  allow_loosen   = true
  max_write_iops = 4294967295
}
`, ctrd.Root)
		cg := lab.Criguard(t, ctrd.Endpoint, "--policy", newPolicyFile(t, policyText), "--resolver", "auto",
			"--containerd-address", ctrd.Socket, "--reconcile-interval", "1s")

		// The control: a valid looser ask counts, so annotations do reach the file.
		valid := lab.NewPod(t, "valid", "bounds-valid")
		valid.Annotations = map[string]string{"criguard.io/write-iops": "300"}
		v := startWorkerIn(t, cg.Endpoint, valid, "valid")
		waitThrottle(t, cg, "a valid ask of 300 IOPS", v.dir, writeIOPSFile, dev, 300, 30*time.Second)

		// 2^32+100: a v1 kernel would keep 100.
		huge := lab.NewPod(t, "huge", "bounds-huge")
		huge.Annotations = map[string]string{"criguard.io/write-iops": "4294967396"}
		h := startWorkerIn(t, cg.Endpoint, huge, "huge")
		assertThrottle(t, cg, "an ask of 4294967396 IOPS", h.dir, writeIOPSFile, dev, 200)
		line := waitLogLine(t, cg, []string{`msg="annotation ignored"`, h.id, "reason=invalid", "4294967396", "the most the kernel holds"}, 30*time.Second)
		t.Logf("criguard logged: %s", line)
		// Passes later the rule's value still stands: not disowned, not rewritten.
		mark := logMark(t, cg)
		waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
		waitLog(t, cg, logMark(t, cg), "msg=reconciled", 30*time.Second)
		assertThrottle(t, cg, "the ask of 4294967396 IOPS, passes later", h.dir, writeIOPSFile, dev, 200)
		assertThrottle(t, cg, "the valid ask, passes later", v.dir, writeIOPSFile, dev, 300)
	})
}

// waitLogLine waits for a line of criguard's log that holds every one of parts, and
// returns it.
func waitLogLine(t *testing.T, cg *lab.CriguardProcess, parts []string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(cg.LogPath)
		if err != nil {
			t.Fatalf("criguard log: %v", err)
		}
	lines:
		for _, line := range strings.Split(string(data), "\n") {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					continue lines
				}
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("criguard logged no line with all of %q within %s%s", parts, timeout, criguardLog(cg))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Finding 14: a policy device given by a path is resolved again on every pass. The
// filesystem at a fixed mount point moves from one loop device to another (unmounted,
// its loop detached, its backing file attached to a loop of another minor, mounted
// again, as a re-attached disk or a re-activated LV would): within a few passes the
// container's file holds the new MAJ:MIN's line, and criguard's line on the old one is
// lifted.
func TestHardeningDeviceMoved(t *testing.T) {
	ctrd := lab.Containerd(t)
	losetup := lab.LookPath(t, "losetup")
	images := lab.DiskDir(t) // removed after the loops below are freed (cleanups run in reverse)
	backing := sparseFile(t, filepath.Join(images, "moved.img"), 64)
	mountPoint := filepath.Join(t.TempDir(), "moved")
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		t.Fatal(err)
	}
	// What this test holds, freed even when it fails: the mount, then every loop.
	var mounted bool
	var loops []string
	t.Cleanup(func() {
		if mounted {
			if out, err := retryCmd("umount", mountPoint); err != nil {
				t.Errorf("umount %s: %v: %s", mountPoint, err, out)
			}
		}
		for _, loop := range loops {
			if out, err := retryCmd(losetup, "-d", loop); err != nil {
				t.Errorf("losetup -d %s: %v: %s", loop, err, out)
			}
		}
	})
	attach := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(losetup, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup %s: %v: %s", strings.Join(args, " "), err, out)
		}
		loop := strings.TrimSpace(string(out))
		loops = append(loops, loop)
		return loop
	}
	mount := func(loop string) {
		t.Helper()
		if out, err := exec.Command("mount", loop, mountPoint).CombinedOutput(); err != nil {
			t.Fatalf("mount %s %s: %v: %s", loop, mountPoint, err, out)
		}
		mounted = true
	}

	first := attach("--find", "--show", backing)
	if out, err := exec.Command(lab.LookPath(t, "mkfs.ext4"), "-q", "-F", first).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", first, err, out)
	}
	mount(first)
	oldDev := blockDev(t, first)

	policyText := fmt.Sprintf(`device "moved" {
  path = %q
}

class "slow" {
  io {
    device    = "moved"
    write_bps = "1MiB"
  }
}

rule "moved" {
  match {
    namespaces = ["moved-*"]
  }
  class = "slow"
}
`, mountPoint)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", newPolicyFile(t, policyText), "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--reconcile-interval", "1s")
	w := startWorker(t, cg.Endpoint, "moved-dev", "mover")
	waitThrottle(t, cg, "the filesystem's first loop "+first, w.dir, writeBPSFile, oldDev, 1*mib, 30*time.Second)

	// Move it. The old loop is taken again at once by a dummy file, so the backing file
	// lands on another minor, and the old MAJ:MIN stays a device criguard may write to.
	if out, err := exec.Command("umount", mountPoint).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", mountPoint, err, out)
	}
	mounted = false
	if out, err := exec.Command(losetup, "-d", first).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s: %v: %s", first, err, out)
	}
	loops = slices.DeleteFunc(loops, func(l string) bool { return l == first })
	if out, err := exec.Command(losetup, first, sparseFile(t, filepath.Join(images, "dummy.img"), 1)).CombinedOutput(); err != nil {
		// Another user of loops took it between the two calls: it is held all the same.
		t.Logf("losetup %s (dummy): %v: %s", first, err, out)
	} else {
		loops = append(loops, first)
	}
	second := attach("--find", "--show", backing)
	mount(second)
	moved := time.Now()
	newDev := blockDev(t, second)
	if newDev == oldDev {
		t.Fatalf("the backing file is on %s (%s) again, want another MAJ:MIN than %s's", second, newDev, first)
	}
	t.Logf("the filesystem at %s moved from %s (%s) to %s (%s)", mountPoint, first, oldDev, second, newDev)

	waitThrottle(t, cg, "the new loop "+second, w.dir, writeBPSFile, newDev, 1*mib, 30*time.Second)
	waitThrottle(t, cg, "criguard's line on the old loop "+first+" lifted", w.dir, writeBPSFile, oldDev, 0, 30*time.Second)
	t.Logf("both done %s after the move", time.Since(moved).Round(10*time.Millisecond))
	// Passes later the file holds the new line only: nothing written while the mount
	// point was empty stays.
	mark := logMark(t, cg)
	waitLog(t, cg, mark, "msg=reconciled", 30*time.Second)
	waitLog(t, cg, logMark(t, cg), "msg=reconciled", 30*time.Second)
	data, err := os.ReadFile(filepath.Join(w.dir, writeBPSFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(data)), fmt.Sprintf("%s %d", newDev, 1*mib); got != want {
		t.Errorf("%s/%s holds %q, want only %q%s", w.dir, writeBPSFile, got, want, criguardLog(cg))
	}
}

// sparseFile makes a sparse file of sizeMiB at path, for a loop device.
func sparseFile(t *testing.T, path string, sizeMiB int64) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	return path
}

// blockDev is "MAJ:MIN" of a block device node, from sysfs.
func blockDev(t *testing.T, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(node), "dev"))
	if err != nil {
		t.Fatalf("MAJ:MIN of %s: %v", node, err)
	}
	return strings.TrimSpace(string(b))
}

// retryCmd runs a command a few times: a device or mount just released may be busy
// for a moment.
func retryCmd(name string, args ...string) ([]byte, error) {
	var out []byte
	var err error
	for range 10 {
		if out, err = exec.Command(name, args...).CombinedOutput(); err == nil {
			return out, nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return out, err
}
