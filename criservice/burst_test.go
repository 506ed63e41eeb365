package criservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/criguard/criguard/criservice/burst"
)

const burstPolicy = `
class "bulk" {
  io {
    device    = "254:0"
    write_bps = "1MiB"
    read_bps  = "2MiB"
    burst {
      write_bps = "4MiB"
      credit    = "8MiB"
    }
  }
}
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "bulk"
}
`

// The burst loop end to end on a fake v1 hierarchy: a started container is raised
// to its burst rate by the runner, a reconcile pass keeps the limit in force rather
// than the sustained rate, and once the counters show the credit spent both the
// loop and the reconciler hold the sustained rate.
func TestBurstLoopAndReconcilerAgree(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, burstPolicy))
	ctl := burst.NewController(nil)
	e.svc.EnableBurst(ctl)
	r, err := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: e.svc, Enforcer: e.svc, Stats: e.svc.BurstStats})
	if err != nil {
		t.Fatal(err)
	}
	e.runPod(t, "p1", "batch", "burstable", nil)
	if signalled(e.svc.BurstBooked()) {
		t.Fatal("BurstBooked signalled before any container bursts")
	}
	rel, err := e.startContainer(t, "c1", "p1", "worker")
	if err != nil {
		t.Fatal(err)
	}
	if !signalled(e.svc.BurstBooked()) {
		t.Fatal("BurstBooked not signalled for the bursting container: the sleeping loop would never see it")
	}
	wbps := func() string { return e.host.file(t, rel, "blkio.throttle.write_bps_device") }
	if got := wbps(); got != "254:0 1048576" {
		t.Fatalf("at start write_bps_device = %q, want the sustained rate until the loop's first tick", got)
	}
	targets := e.svc.BurstTargets()
	if len(targets) != 1 || targets[0].Container != "c1" || !targets[0].Fresh || len(targets[0].Lines) != 1 {
		t.Fatalf("BurstTargets = %+v, want c1, fresh, one line", targets)
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	if got := wbps(); got != "254:0 4194304" {
		t.Fatalf("after the first tick write_bps_device = %q, want the burst rate", got)
	}
	if got := e.host.file(t, rel, "blkio.throttle.read_bps_device"); got != "254:0 2097152" {
		t.Errorf("read_bps_device = %q: a key without a burst must stay", got)
	}
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := wbps(); got != "254:0 4194304" {
		t.Fatalf("a reconcile pass wrote %q over the burst: the reconciler fights the loop", got)
	}
	if signalled(e.svc.BurstBooked()) {
		t.Error("BurstBooked signalled again for a container already booked")
	}
	// The container writes 4 MiB in a second, then 4 more: 8 MiB of credit, 1 MiB/s
	// earned, is spent after the second (the third would overdraw).
	stat := func(n int) {
		content := fmt.Sprintf("254:0 Read 0\n254:0 Write %d\n254:0 Total %d\nTotal %d\n", n, n, n)
		if err := os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.io_service_bytes"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat(4 << 20)
	r.Tick(ctx, now.Add(time.Second))
	if got := wbps(); got != "254:0 4194304" {
		t.Fatalf("after 4 of 8 MiB: %q, want still bursting", got)
	}
	stat(8 << 20)
	r.Tick(ctx, now.Add(2*time.Second))
	if got := wbps(); got != "254:0 1048576" {
		t.Fatalf("after the credit is spent write_bps_device = %q, want the sustained rate", got)
	}
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := wbps(); got != "254:0 1048576" {
		t.Errorf("after a reconcile pass: %q, want the sustained rate", got)
	}
	// A policy without the burst: the booking goes and the plan is the sustained one.
	e.policy.Store(mustPolicy(t, basePolicy))
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if targets := e.svc.BurstTargets(); len(targets) != 0 {
		t.Errorf("BurstTargets = %+v after the burst left the policy", targets)
	}
}

// An unthrottled burst lifts criguard's own line and puts it back: ownership follows.
func TestUnthrottledBurstLiftsAndRestoresTheLine(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "bulk" {
  io {
    device    = "254:0"
    write_bps = "1MiB"
    burst {
      credit = "1MiB"
    }
  }
}
rule "batch" {
  class = "bulk"
}
`))
	ctl := burst.NewController(nil)
	e.svc.EnableBurst(ctl)
	r, _ := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: e.svc, Enforcer: e.svc, Stats: e.svc.BurstStats})
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "worker")
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 0" {
		t.Fatalf("unthrottled burst: write_bps_device = %q, want the line lifted (254:0 0)", got)
	}
	content := "254:0 Write 52428800\n"
	if err := os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.io_service_bytes"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Tick(ctx, now.Add(time.Second))
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Fatalf("after the credit is spent: %q, want the sustained rate back", got)
	}
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("after a reconcile pass: %q", got)
	}
}

// explain says why a bursting key's limit in force is above the class's: the credit
// left, from the daemon's burst.json.
func TestExplainSaysTheCreditLeft(t *testing.T) {
	stateDir := t.TempDir()
	e := newTestEnv(t, func(o *Options) { o.StateDir = stateDir })
	e.policy.Store(mustPolicy(t, burstPolicy))
	ctl := burst.NewController(nil)
	e.svc.EnableBurst(ctl)
	r, err := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: e.svc, Enforcer: e.svc, Stats: e.svc.BurstStats,
		StatePath: filepath.Join(stateDir, burst.StateFile)})
	if err != nil {
		t.Fatal(err)
	}
	e.runPod(t, "p1", "batch", "burstable", nil)
	if _, err := e.startContainer(t, "c1", "p1", "worker"); err != nil {
		t.Fatal(err)
	}
	r.Tick(context.Background(), time.Unix(1e9, 0))
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := "write_bps on 254:0: 4MiB/s in force, the class gives 1MiB/s: bursting, credit left 8MiB"
	if len(ex.InForceNotes) != 1 || ex.InForceNotes[0] != want {
		t.Errorf("notes = %q, want %q", ex.InForceNotes, want)
	}
}

// A reconcile pass that planned a bursting container before the burst loop's tick
// and writes after it writes the tick's limit (the burst loop vs reconcile race):
// writes to one cgroup are serialized and the limits in force laid again under the lock.
func TestStalePlanKeepsTheBurst(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, burstPolicy))
	ctl := burst.NewController(nil)
	e.svc.EnableBurst(ctl)
	r, err := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: e.svc, Enforcer: e.svc, Stats: e.svc.BurstStats})
	if err != nil {
		t.Fatal(err)
	}
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "worker")
	if err != nil {
		t.Fatal(err)
	}
	stale, err := e.plan("c1", planOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Tick(context.Background(), time.Unix(1e9, 0))
	if _, _, err := e.svc.applyPlan(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 4194304" {
		t.Errorf("a plan made before the tick wrote %q over the burst rate", got)
	}
}

// signalled receives a pending signal, without waiting.
func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
