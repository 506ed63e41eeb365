package criservice

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
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
	if _, ok := e.svc.store.container("c1"); ok {
		t.Error("Removed left the container in the store")
	}
	if _, ok := e.svc.store.pod("p1"); ok {
		t.Error("PodRemoved left the pod in the store")
	}
}

// On v1 a pod budget is split by the start and stop events themselves: an NRI
// event comes while the runtime still lists the container in its old state (CRI-O
// lists a container it is starting as created until its StartContainer returns;
// containerd lists a stopped one as running until its exit is handled).
func TestPodShareFollowsEventsBeforeTheListing(t *testing.T) {
	e := newTestEnv(t, nil)
	parent := e.runPod(t, "p1", "team", "burstable", nil)
	ctx := context.Background()
	pod := Pod{ID: "p1", Namespace: "team", Name: "pod-p1", CgroupParent: parent}
	setState := func(id string, state runtimeapi.ContainerState) {
		e.fake.Mu.Lock()
		defer e.fake.Mu.Unlock()
		e.fake.Containers[id].State = state
	}
	start := func(id, name string, listed runtimeapi.ContainerState) string {
		e.fake.AddContainer(id, "p1", name)
		setState(id, listed)
		e.fake.Mu.Lock()
		rel := e.fake.Paths[id]
		e.fake.Mu.Unlock()
		e.host.mkdir(t, rel)
		e.svc.Created(ctx, pod, Container{ID: id, PodID: "p1", Name: name, CgroupsPath: rel})
		if err := e.svc.Started(ctx, id, e.svc.Starting(ctx, id)); err != nil {
			t.Fatal(err)
		}
		return rel
	}
	writeBPS := func(rel string) string { return e.host.file(t, rel, "blkio.throttle.write_bps_device") }

	first := start("c1", "app", runtimeapi.ContainerState_CONTAINER_RUNNING)
	if got := writeBPS(first); got != "254:0 3145728" {
		t.Fatalf("the pod's only container: write_bps = %q, want the whole 3 MiB/s", got)
	}
	// Listed as created while its start is handled.
	second := start("c2", "sidecar", runtimeapi.ContainerState_CONTAINER_CREATED)
	for name, rel := range map[string]string{"first": first, "second": second} {
		if got := writeBPS(rel); got != "254:0 1572864" {
			t.Errorf("%s container once the second started: write_bps = %q, want half the budget", name, got)
		}
	}
	setState("c2", runtimeapi.ContainerState_CONTAINER_RUNNING)

	// Stopped, and still listed as running.
	e.svc.Stopped(ctx, "c2")
	if got := writeBPS(first); got != "254:0 3145728" {
		t.Errorf("first container after the second stopped: write_bps = %q, want the whole budget back", got)
	}
	// A pass while the runtime lists it as running still counts it stopped.
	e.reconcile(t)
	if got := writeBPS(first); got != "254:0 3145728" {
		t.Errorf("after a pass: write_bps = %q, want the whole budget", got)
	}

	e.svc.Removed("c2")
	if ids := e.svc.store.runningOf("p1", nil); len(ids) != 0 {
		t.Errorf("after Removed the events still count %v", ids)
	}
}

// Updating reports the policy's pids limit for a front end whose runtime takes a
// pids field (CRI has none), and none for a container the policy leaves alone.
func TestUpdatingReportsThePidsLimit(t *testing.T) {
	e, _ := newResourcesEnv(t, false)
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	e.runPod(t, "p2", "free", "burstable", nil)
	ctx := context.Background()
	for _, c := range []struct{ id, pod string }{{"c1", "p1"}, {"c2", "p2"}} {
		e.fake.AddContainer(c.id, c.pod, "app")
		e.svc.Created(ctx, Pod{ID: c.pod}, Container{ID: c.id, PodID: c.pod, Name: "app", CgroupsPath: parent + "/" + c.id})
	}
	if u, _ := e.svc.Updating(ctx, "c1", &runtimeapi.LinuxContainerResources{}); u.PidsMax != 20 {
		t.Errorf("throttled container: PidsMax %d, want the class's 20", u.PidsMax)
	}
	if u, _ := e.svc.Updating(ctx, "c2", &runtimeapi.LinuxContainerResources{}); u.PidsMax != 0 {
		t.Errorf("unmatched container: PidsMax %d, want 0", u.PidsMax)
	}
}

// The planner's notes on a container, and the enforcer's lock on its cgroup, go with it: at RemoveContainer, or at the next
// pass when the runtime removed it behind criguard's back. A node churns containers
// without end, and a daemon that kept a note per container ever seen would grow with
// them (the soak's RSS).
func TestPlannerForgetsRemovedContainers(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	for _, id := range []string{"c1", "c2", "c3"} {
		if _, err := e.startContainer(t, id, "p1", "app-"+id); err != nil {
			t.Fatal(err)
		}
	}
	locked := func() (dirs []string) {
		e.svc.enforcer.dirLocks.Range(func(k, _ any) bool { dirs = append(dirs, k.(string)); return true })
		return dirs
	}
	if got := locked(); len(got) != 4 {
		t.Fatalf("write locks for %v, want the pod's and three containers' cgroups", got)
	}
	noted := func() (ids []string) {
		e.svc.planner.classLimits.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
		slices.Sort(ids)
		return ids
	}
	if got := noted(); !slices.Equal(got, []string{"c1", "c2", "c3"}) {
		t.Fatalf("class limits noted for %v, want c1, c2, c3", got)
	}
	e.removeInRuntime(t, "c1")
	if err := e.call(t, "RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: "c1"}, &runtimeapi.RemoveContainerResponse{}); err != nil {
		t.Fatal(err)
	}
	if got := noted(); !slices.Equal(got, []string{"c2", "c3"}) {
		t.Errorf("after RemoveContainer c1: noted for %v, want c2, c3", got)
	}
	if got := locked(); len(got) != 3 { // the pod's and c2's and c3's cgroups
		t.Errorf("after RemoveContainer c1: write locks for %v, want the pod's, c2's and c3's", got)
	}
	e.removeInRuntime(t, "c2") // without criguard seeing the call
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := noted(); !slices.Equal(got, []string{"c3"}) {
		t.Errorf("after a pass without c2: noted for %v, want c3", got)
	}
	if got := locked(); len(got) != 2 {
		t.Errorf("after a pass without c2: write locks for %v, want the pod's and c3's", got)
	}
}

// A node starts and removes containers without end: after any number of them, what
// criguard keeps is what still runs. Removed with their cgroups, 50 containers leave
// nothing in the store, the planner's notes, the enforcer's locks or its records (the
// soak's RSS grew with such leftovers; its figures are docs/BENCHMARKS.md's).
func TestChurnLeavesNothingBehind(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	for i := range 50 {
		id := fmt.Sprintf("c%02d", i)
		if _, err := e.startContainer(t, id, "p1", "app"); err != nil {
			t.Fatal(err)
		}
		e.removeInRuntime(t, id)
		if err := e.call(t, "RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: id}, &runtimeapi.RemoveContainerResponse{}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(m *sync.Map) (n int) {
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	_, containers := e.svc.store.size()
	e.svc.enforcer.owned.mu.Lock()
	owned, handed := len(e.svc.enforcer.owned.dirs), len(e.svc.enforcer.owned.handed)
	e.svc.enforcer.owned.mu.Unlock()
	for what, n := range map[string]int{
		"containers in the store":      containers,
		"class limits noted":           count(&e.svc.planner.classLimits),
		"write locks beyond the pod's": count(&e.svc.enforcer.dirLocks) - 1,
		"cgroups in the limits record": owned + handed,
	} {
		if n != 0 {
			t.Errorf("after 50 containers came and went: %d %s, want 0", n, what)
		}
	}
}
