//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/test/e2e/lab"
)

// Burst credit on the real kernel: sustained 3 MiB/s, bursts up to 24 MiB/s for
// 24 MiB of credit, sampled every 250 ms.
const (
	burstSustained = 3 * mib
	burstRate      = 24 * mib
	burstCredit    = 24 * mib
)

func burstPolicy(devicePath string) string {
	return fmt.Sprintf(`device "data" {
  path = %q
}

class "bursty" {
  io {
    device    = "data"
    write_bps = "3MiB"
    burst {
      write_bps = "24MiB"
      credit    = "24MiB"
    }
  }
}

rule "bursty" {
  match {
    namespaces = ["burst-*"]
  }
  class = "bursty"
}
`, devicePath)
}

// chunkWrites writes n MiB with O_DIRECT, one file of 1 MiB at a time, and prints
// the uptime after each: the progress of the write as the container saw it.
func chunkWrites(prefix string, n int) string {
	return fmt.Sprintf(`read u _ </proc/uptime; echo "chunk -1 $u"
i=0; while [ $i -lt %d ]; do dd if=/dev/zero of=/data/%s$i bs=64k count=16 oflag=direct 2>/dev/null || exit 1; read u _ </proc/uptime; echo "chunk $i $u"; i=$((i+1)); done`, n, prefix)
}

// chunkTimes parses chunkWrites' output into the seconds each MiB took.
func chunkTimes(t *testing.T, out string) []float64 {
	t.Helper()
	var marks []float64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "chunk" {
			continue
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatalf("bad uptime in %q", line)
		}
		marks = append(marks, v)
	}
	if len(marks) < 2 {
		t.Fatalf("no chunk timings in %q", out)
	}
	secs := make([]float64, len(marks)-1)
	for i := range secs {
		secs[i] = marks[i+1] - marks[i]
	}
	return secs
}

// splitBurst splits the seconds each MiB took into the burst and the sustained
// part. The burst ends with the last MiB faster than 8 MiB/s: a loaded machine can
// make one MiB of the burst slow, and that MiB must not move the rest of the burst
// into the sustained part. The sustained part starts one MiB later (the limit
// drops mid-MiB).
func splitBurst(secs []float64) (fast int, fastSecs float64, slowMiB int, slowSecs float64) {
	for i, s := range secs {
		if s < 1.0/8 {
			fast = i + 1
		}
	}
	for _, s := range secs[:fast] {
		fastSecs += s
	}
	tail := secs[min(fast+1, len(secs)):]
	for _, s := range tail {
		slowSecs += s
	}
	return fast, fastSecs, len(tail), slowSecs
}

// TestBurstContainerd: a container with burst credit writes more than its credit
// with O_DIRECT. The first part runs at the burst rate, the rest at the sustained
// rate, measured MiB by MiB in the container; a restart of criguard grants no fresh
// credit; after an idle pause the credit is back and the next write is fast again.
func TestBurstContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, burstPolicy(ctrd.Root))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--resolver", "auto",
		"--containerd-address", ctrd.Socket, "--metrics-addr", "127.0.0.1:0", "--burst-interval", "250ms")
	ep := cg.Endpoint
	w := startWorker(t, ep, "burst-e2e", "burster")

	// The hook writes the sustained rate before start; the loop's first tick gives a
	// fresh container its full credit.
	waitThrottle(t, cg, "burst rate after start", w.dir, writeBPSFile, dev, burstRate, 2*time.Second)

	const total = 40 // MiB: 24 of credit, what 3 MiB/s earns meanwhile, then sustained
	got, err := lab.TimedExec(t, ep, w.id, "", chunkWrites("a", total))
	if err != nil {
		t.Fatalf("write: %v%s", err, criguardLog(cg))
	}
	fast, fastSecs, slowMiB, slowSecs := splitBurst(chunkTimes(t, got.Output))
	t.Logf("%d MiB in %.2fs: the first %d MiB at %.1f MiB/s, the last %d MiB at %.2f MiB/s (sustained 3, burst 24, credit 24)",
		total, got.Elapsed.Seconds(), fast, float64(fast)/fastSecs, slowMiB, float64(slowMiB)/slowSecs)
	if fast < 16 || fast > 34 {
		t.Errorf("%d MiB ran fast, want about the 24 MiB of credit (16–34)%s", fast, criguardLog(cg))
	}
	if rate := float64(fast) / fastSecs; rate < 10 {
		t.Errorf("the burst ran at %.1f MiB/s, want well above the sustained 3 (at least 10)", rate)
	}
	if rate := float64(slowMiB) / slowSecs; slowMiB < 4 || rate < 2.2 || rate > 3.8 {
		t.Errorf("after the credit: %d MiB at %.2f MiB/s, want the sustained 3 MiB/s%s", slowMiB, rate, criguardLog(cg))
	}
	assertThrottle(t, cg, "sustained rate once the credit is spent", w.dir, writeBPSFile, dev, burstSustained)

	// A restart restores what was left (a few MiB), not a full bucket: the limit
	// stays at the sustained rate.
	cg.Restart(t)
	time.Sleep(time.Second)
	assertThrottle(t, cg, "sustained rate right after a restart", w.dir, writeBPSFile, dev, burstSustained)

	// Idle: 3 MiB/s earns the 24 MiB back in 8 s; the burst reopens at half.
	took := waitThrottle(t, cg, "burst rate after an idle pause", w.dir, writeBPSFile, dev, burstRate, 8*time.Second)
	time.Sleep(9*time.Second - took)
	again, err := lab.TimedExec(t, ep, w.id, "", chunkWrites("b", 16))
	if err != nil {
		t.Fatalf("write again: %v%s", err, criguardLog(cg))
	}
	var againSecs float64
	for _, s := range chunkTimes(t, again.Output) {
		againSecs += s
	}
	t.Logf("after the idle pause: 16 MiB in %.2fs (%.1f MiB/s)", againSecs, 16/againSecs)
	if rate := 16 / againSecs; rate < 10 {
		t.Errorf("after the idle pause 16 MiB ran at %.1f MiB/s, want the burst back (at least 10)%s", rate, criguardLog(cg))
	}
	log := cg.Log(400)
	for _, reason := range []string{"new_bucket", "credit_spent", "credit_refilled"} {
		if !strings.Contains(log, "reason="+reason) {
			t.Errorf("criguard logged no change with reason %s%s", reason, criguardLog(cg))
		}
	}
}

// kernelTarget and kernelEnforcer drive the burst loop over a bare blkio cgroup:
// no runtime, the loop's law against the kernel's counters and throttle alone.
type kernelTarget struct{ t burst.Target }

func (k kernelTarget) BurstTargets() []burst.Target { return []burst.Target{k.t} }

type kernelEnforcer struct {
	io  cgroup.IO
	ctl *burst.Controller
	key burst.Key
	dir string
}

func (e kernelEnforcer) EnforceInForce(context.Context, string) error {
	l, _ := e.ctl.InForce(e.key)
	return cgroup.Apply(e.dir, e.io.Writes([]cgroup.IOLimit{{Device: e.key.Device, WriteBPS: l}}))
}

// TestBurstKernel runs the burst loop (250 ms ticks) on a blkio cgroup of its own
// holding a shell that writes 36 MiB with O_DIRECT to the root disk: about the 24 MiB
// of credit (and what 3 MiB/s earns meanwhile) at the burst rate, the rest at 3 MiB/s.
func TestBurstKernel(t *testing.T) {
	h, err := cgroup.DetectHost("")
	if err != nil {
		t.Fatal(err)
	}
	io, err := h.IO()
	if err != nil || io.Version() != 1 {
		t.Fatalf("want the v1 blkio backend of this host: %v", err)
	}
	data := lab.DiskDir(t)
	devText := lab.WholeDisk(t, data)
	dev, err := cgroup.ParseDevice(devText)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(io.Mount(), fmt.Sprintf("criguard-e2e-burst-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	spec := burst.Spec{Sustained: burstSustained, Burst: burstRate, Credit: burstCredit}
	target := burst.Target{Container: "kernel", Dir: dir, Fresh: true, Lines: []burst.Line{{Device: dev, Kind: burst.WriteBPS, Spec: spec}}}
	ctl := burst.NewController(nil)
	enf := kernelEnforcer{io: io, ctl: ctl, key: burst.Key{Container: "kernel", Device: dev, Kind: burst.WriteBPS}, dir: dir}
	if err := cgroup.Apply(dir, io.Writes([]cgroup.IOLimit{{Device: dev, WriteBPS: spec.Sustained}})); err != nil {
		t.Fatal(err)
	}
	r, err := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: kernelTarget{target}, Enforcer: enf, Stats: io.Stats, Interval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := lab.WaitThrottle(dir, writeBPSFile, devText, burstRate, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("echo $$ > %s/cgroup.procs\n", dir) + strings.ReplaceAll(chunkWrites("k", 36), "/data/", data+"/")
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("write: %v: %s", err, out)
	}
	fast, fastSecs, slowMiB, slowSecs := splitBurst(chunkTimes(t, string(out)))
	t.Logf("36 MiB: the first %d MiB at %.1f MiB/s, the last %d MiB at %.2f MiB/s (sustained 3, burst 24, credit 24)",
		fast, float64(fast)/fastSecs, slowMiB, float64(slowMiB)/slowSecs)
	if fast < 16 || fast > 32 || float64(fast)/fastSecs < 10 {
		t.Errorf("%d MiB in %.2fs ran fast, want about the 24 MiB of credit at 10 MiB/s or more", fast, fastSecs)
	}
	if rate := float64(slowMiB) / slowSecs; slowMiB < 3 || rate < 2.2 || rate > 3.8 {
		t.Errorf("after the credit: %d MiB at %.2f MiB/s, want the sustained 3 MiB/s", slowMiB, rate)
	}
	if got, err := lab.Throttle(dir, writeBPSFile, devText); err != nil || got != burstSustained {
		t.Errorf("%s holds %d (%v), want the sustained rate", writeBPSFile, got, err)
	}
}
