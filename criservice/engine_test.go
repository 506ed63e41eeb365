package criservice

import (
	"context"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The engine is driven by Pod and Container values, as a front end other than the
// CRI handlers drives it (an NRI plugin): no CRI bytes, one decision per event,
// and the same limits as through the proxy.
func TestEngineDrivenByValues(t *testing.T) {
	e, _ := newResourcesEnv(t, true)
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	decisions := countDecisions(e.svc)
	ctx := context.Background()

	pod := Pod{ID: "p1", Namespace: "batch", Name: "pod-p1", CgroupParent: parent}
	ct := Container{PodID: "p1", Name: "app", Image: "busybox"}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 1024}
	if !e.svc.Creating(ctx, pod, ct, res) {
		t.Fatal("Creating left the resources of a throttled class as they were")
	}
	if got := res.Unified["io.max"]; got != "254:0 rbps=max wbps=1048576 riops=max wiops=max" {
		t.Errorf("unified io.max = %q, want the rule's write_bps", got)
	}
	if res.Unified["pids.max"] != "20" || res.Unified["cpu.weight"] != "50" {
		t.Errorf("unified = %v, want pids.max 20 and cpu.weight 50", res.Unified)
	}
	if *decisions != 1 {
		t.Errorf("Creating made %d decisions, want 1", *decisions)
	}

	// The runtime made it: the front end names its ID and cgroup.
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Mu.Unlock()
	dir := e.host.mkdir(t, rel)
	ct.ID, ct.CgroupsPath = "c1", rel
	e.svc.Created(ctx, pod, ct)

	*decisions = 0
	st := e.svc.Starting(ctx, "c1")
	if err := e.svc.Started(ctx, "c1", st); err != nil {
		t.Fatal(err)
	}
	if *decisions != 1 {
		t.Errorf("a start made %d decisions, want 1", *decisions)
	}
	limits, err := e.host.io.Limits(dir)
	if err != nil || len(limits) != 1 || limits[0].WriteBPS != 1<<20 {
		t.Errorf("limits after Started = %v (%v), want write_bps 1048576 in %s", limits, err, filepath.Base(dir))
	}

	e.svc.Removed("c1")
	e.svc.PodRemoved("p1")
	if _, ok := e.svc.cache.container("c1"); ok {
		t.Error("Removed left the container in the store")
	}
	if _, ok := e.svc.cache.pod("p1"); ok {
		t.Error("PodRemoved left the pod in the store")
	}
}
