package criservice

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// countingReads counts the limit reads that reach the cgroup files.
type countingReads struct {
	cgroup.IO
	reads atomic.Int64
}

func (c *countingReads) Limits(dir string) ([]cgroup.IOLimit, error) {
	c.reads.Add(1)
	return c.IO.Limits(dir)
}

func changedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// With the limit files watched, a pass reads back only what was written since the
// last read, criguard's own writes do not call for a pass, and a tenant's lift does:
// the pass it calls restores the limit.
func TestWatchedLimitsAreReadOnlyWhenWritten(t *testing.T) {
	var reads *countingReads
	reg := prometheus.NewRegistry()
	e := newTestEnv(t, func(o *Options) {
		reads = &countingReads{IO: o.IO}
		o.IO, o.ReadBackMaxAge, o.Metrics = reads, time.Hour, NewMetrics(reg)
	})
	t.Cleanup(func() { e.svc.Close() })
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	const want = "254:0 1048576"
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != want {
		t.Fatalf("write_bps = %q after start, want %q", got, want)
	}
	if changedWithin(e.svc.LimitsChanged(), 200*time.Millisecond) {
		t.Fatal("criguard's own writes called for a pass")
	}

	ctx := context.Background()
	if res, err := e.svc.Reconcile(ctx); err != nil || res.Fixed != 0 {
		t.Fatalf("first pass: %+v, %v; want nothing to fix", res, err)
	}
	before := reads.reads.Load()
	for range 3 {
		if res, err := e.svc.Reconcile(ctx); err != nil || res.Fixed != 0 || res.Containers != 1 {
			t.Fatalf("pass: %+v, %v; want one container, nothing to fix", res, err)
		}
	}
	if n := reads.reads.Load() - before; n != 0 {
		t.Fatalf("three passes over unchanged cgroups read limits %d times, want none", n)
	}
	// The operator sees it: answers from memory, the files read, the cgroups watched.
	memory := seriesSum(t, reg, "criguard_limit_reads_total", "memory")
	files := seriesSum(t, reg, "criguard_limit_reads_total", "files")
	watches := seriesSum(t, reg, "criguard_limit_watches", "")
	if memory < 3 || files < 1 || files != float64(before) || watches != 1 {
		t.Fatalf("metrics: %v from memory, %v from the files, %v watched; want ≥ 3, the %d reads, 1", memory, files, watches, before)
	}

	// The tenant lifts the limit, and again once criguard wrote it back.
	for round := 1; round <= 2; round++ {
		if err := os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.write_bps_device"), []byte("254:0 0"), 0o644); err != nil {
			t.Fatal(err)
		}
		if !changedWithin(e.svc.LimitsChanged(), 5*time.Second) {
			t.Fatalf("lift %d did not call for a pass", round)
		}
		// O_TRUNC then write: two events, which may call twice.
		changedWithin(e.svc.LimitsChanged(), 100*time.Millisecond)
		if res, err := e.svc.Reconcile(ctx); err != nil || res.Fixed != 1 {
			t.Fatalf("the pass after lift %d: %+v, %v; want 1 fixed", round, res, err)
		}
		if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != want {
			t.Fatalf("write_bps = %q after the pass, want %q", got, want)
		}
		if changedWithin(e.svc.LimitsChanged(), 200*time.Millisecond) {
			t.Fatal("criguard's repair called for another pass")
		}
	}
}

// Without ReadBackMaxAge every pass reads every limited cgroup, as before.
func TestUnwatchedLimitsAreReadEveryPass(t *testing.T) {
	var reads *countingReads
	e := newTestEnv(t, func(o *Options) {
		reads = &countingReads{IO: o.IO}
		o.IO = reads
	})
	e.runPod(t, "p1", "batch", "burstable", nil)
	if _, err := e.startContainer(t, "c1", "p1", "app"); err != nil {
		t.Fatal(err)
	}
	if e.svc.LimitsChanged() != nil {
		t.Fatal("LimitsChanged is a channel with nothing watched")
	}
	before := reads.reads.Load()
	for range 3 {
		if _, err := e.svc.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.reads.Load() - before; n < 3 {
		t.Fatalf("three passes read limits %d times, want at least one each", n)
	}
}

// cgroupfs never says that a watched cgroup went (no IN_IGNORED, and the watch pins
// the removed directory): the pass after a container's removal drops its watch, so
// that a node's churn does not pile them up.
func TestPassForgetsTheWatchesOfRemovedCgroups(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newTestEnv(t, func(o *Options) { o.ReadBackMaxAge, o.Metrics = time.Hour, NewMetrics(reg) })
	t.Cleanup(func() { e.svc.Close() })
	e.runPod(t, "p1", "batch", "burstable", nil)
	for _, id := range []string{"c1", "c2"} {
		if _, err := e.startContainer(t, id, "p1", "app"); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile(t)
	before := seriesSum(t, reg, "criguard_limit_watches", "")
	if before < 2 {
		t.Fatalf("%v cgroups watched, want both containers'", before)
	}

	e.removeInRuntime(t, "c1")
	e.reconcile(t)
	if after := seriesSum(t, reg, "criguard_limit_watches", ""); after != before-1 {
		t.Fatalf("%v cgroups watched after c1's removal, want %v", after, before-1)
	}
}

// A container removed through criguard drops its cgroup's watch at once: a node's
// churn leaves nothing behind between passes.
func TestRemoveContainerDropsItsWatch(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newTestEnv(t, func(o *Options) { o.ReadBackMaxAge, o.Metrics = time.Hour, NewMetrics(reg) })
	t.Cleanup(func() { e.svc.Close() })
	e.runPod(t, "p1", "batch", "burstable", nil)
	if _, err := e.startContainer(t, "c1", "p1", "app"); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	before := seriesSum(t, reg, "criguard_limit_watches", "")
	if before < 1 {
		t.Fatal("the container's cgroup is not watched")
	}
	e.removeInRuntime(t, "c1")
	if err := e.call(t, "RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: "c1"}, &runtimeapi.RemoveContainerResponse{}); err != nil {
		t.Fatal(err)
	}
	if after := seriesSum(t, reg, "criguard_limit_watches", ""); after != before-1 {
		t.Fatalf("%v cgroups watched after RemoveContainer, want %v", after, before-1)
	}
}
