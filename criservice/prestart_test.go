package criservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/policy"
)

// Before StartContainer is forwarded, the limits are in the container's cgroup
// (CRI-O makes it at CreateContainer; on cgroupfs criguard makes it itself).
func TestLimitsAreInPlaceBeforeStartIsForwarded(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel)
	req := marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"})
	out, _, err := e.hook("StartContainer").Before(context.Background(), req)
	if err != nil {
		t.Fatalf("Before StartContainer: %v", err)
	}
	if string(out) != string(req) {
		t.Errorf("StartContainer request changed")
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("before start: write_bps = %q, want 254:0 1048576", got)
	}
}

// A cgroupfs container whose cgroup does not exist yet: criguard makes it inside
// its pod's cgroup, and only there.
func TestPrestartMakesOnlyTheContainersCgroup(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Mu.Unlock()
	plan, err := e.plan("c1", planOptions{create: true, starting: true})
	if err != nil {
		t.Fatalf("plan with create: %v", err)
	}
	if plan.Dir != e.host.mount+rel {
		t.Errorf("dir = %s, want %s", plan.Dir, e.host.mount+rel)
	}
	// A path that would leave the mount is never made.
	e.fake.AddContainer("c2", "p1", "evil")
	e.fake.Mu.Lock()
	e.fake.Paths["c2"] = "/../../escape"
	e.fake.Mu.Unlock()
	if _, err := e.plan("c2", planOptions{create: true}); err == nil {
		t.Errorf("a cgroupsPath that escapes the mount was accepted")
	}
}

// On cgroup v2 the limits ride in the CreateContainer request, so the OCI runtime
// writes io.max before the process exists.
func TestCreateContainerCarriesIOMaxOnV2(t *testing.T) {
	e := newTestEnv(t, nil)
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.Mu.Lock()
	sandbox := e.fake.Pods["p1"]
	e.fake.Mu.Unlock()
	create := func(unified map[string]string) map[string]string {
		t.Helper()
		req := &runtimeapi.CreateContainerRequest{PodSandboxId: "p1",
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, Unified: unified}}},
			SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: sandbox.Metadata}}
		out, _, err := e.hook("CreateContainer").Before(context.Background(), marshal(t, req))
		if err != nil {
			t.Fatal(err)
		}
		var got runtimeapi.CreateContainerRequest
		if err := proto.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Config.Linux.Resources.CpuShares != 2 {
			t.Errorf("kubelet's own resources were changed: %v", got.Config.Linux.Resources)
		}
		return got.Config.Linux.Resources.Unified
	}
	if got := create(nil)["io.max"]; got != "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max" {
		t.Errorf("unified io.max = %q", got)
	}
	if got := create(map[string]string{"memory.high": "1000000"}); got["memory.high"] != "1000000" || got["io.max"] == "" {
		t.Errorf("unified = %v: kubelet's keys must stay beside io.max", got)
	}
	// kubelet's stricter key stays; the keys it left out come from the policy.
	if got := create(map[string]string{"io.max": "254:0 wbps=1"})["io.max"]; got != "254:0 rbps=2097152 wbps=1 riops=max wiops=max" {
		t.Errorf("an io.max kubelet set itself: %q, want its wbps kept and the policy's rbps added", got)
	}
	if got := create(map[string]string{"io.max": "254:0 rbps=max wbps=max riops=max wiops=max"})["io.max"]; got != "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max" {
		t.Errorf("an unlimited io.max from kubelet went to the runtime as %q", got)
	}
}

// updateThrough passes an UpdateContainerResources for container id through the hook and
// returns the resources the runtime gets, and whether the bytes went on untouched.
func updateThrough(t *testing.T, e *testEnv, id string, res *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, bool) {
	t.Helper()
	in := marshal(t, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res})
	out, _, err := e.hook("UpdateContainerResources").Before(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var got runtimeapi.UpdateContainerResourcesRequest
	if err := proto.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got.Linux, string(out) == string(in)
}

func newIOMaxUpdateEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newTestEnv(t, nil)
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	return e
}

const policyIOMax = "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max" // class "bulk"

// kubelet's UpdateContainerResources (a resize, a restart of kubelet) carries unified
// or not; either way the runtime gets criguard's io.max line with it, beside
// kubelet's own keys, and nothing else of kubelet's changes.
func TestUpdateContainerResourcesKeepsIOMaxV2(t *testing.T) {
	e := newIOMaxUpdateEnv(t)
	for _, unified := range []map[string]string{nil, {"memory.high": "1000000"}} {
		got, same := updateThrough(t, e, "c1", &runtimeapi.LinuxContainerResources{CpuShares: 512, Unified: unified})
		if same || got.Unified["io.max"] != policyIOMax {
			t.Errorf("unified %v: io.max = %q, want %q", unified, got.Unified["io.max"], policyIOMax)
		}
		if got.CpuShares != 512 || len(got.Unified) != len(unified)+1 || (unified != nil && got.Unified["memory.high"] != "1000000") {
			t.Errorf("unified %v: kubelet's resources changed: %v", unified, got)
		}
	}
	// A container no rule throttles: the update goes on as kubelet sent it.
	e.runPod(t, "p2", "web", "burstable", nil)
	e.fake.AddContainer("c2", "p2", "app")
	if got, same := updateThrough(t, e, "c2", &runtimeapi.LinuxContainerResources{CpuShares: 512}); !same {
		t.Errorf("an unthrottled container's update was rewritten: %v", got)
	}
}

// An io.max in the update looser than the policy (kubelet's, or a tenant's by way of
// anything that sets unified) does not reach the runtime: criguard only tightens,
// key by key, and keeps what is stricter than the policy.
func TestUpdateContainerResourcesNeverLoosensIOMaxV2(t *testing.T) {
	e := newIOMaxUpdateEnv(t)
	tests := []struct{ sent, want string }{
		{"254:0 rbps=max wbps=max riops=max wiops=max", policyIOMax},
		{"254:0 rbps=1073741824 wbps=1073741824", policyIOMax},
		{"254:0 wbps=4194304 wiops=100", "254:0 rbps=2097152 wbps=1048576 riops=max wiops=100"},
		{"254:0 rbps=1 wbps=2097152", "254:0 rbps=1 wbps=1048576 riops=max wiops=max"},
	}
	for _, tt := range tests {
		got, same := updateThrough(t, e, "c1", &runtimeapi.LinuxContainerResources{Unified: map[string]string{"io.max": tt.sent}})
		if same || got.Unified["io.max"] != tt.want {
			t.Errorf("io.max %q sent: the runtime gets %q, want %q", tt.sent, got.Unified["io.max"], tt.want)
		}
	}
	// Stricter on every key the policy sets: kubelet's line goes on as it is.
	strict := "254:0 rbps=1 wbps=1"
	if got, same := updateThrough(t, e, "c1", &runtimeapi.LinuxContainerResources{Unified: map[string]string{"io.max": strict}}); !same {
		t.Errorf("a stricter io.max was rewritten to %q", got.Unified["io.max"])
	}
}

// What the hook sends, sent through it again, passes untouched: no second rewrite.
func TestUpdateContainerResourcesIOMaxIdempotentV2(t *testing.T) {
	e := newIOMaxUpdateEnv(t)
	for _, sent := range []map[string]string{nil, {"io.max": "254:0 wbps=max wiops=7"}} {
		first, _ := updateThrough(t, e, "c1", &runtimeapi.LinuxContainerResources{CpuShares: 512, Unified: sent})
		second, same := updateThrough(t, e, "c1", proto.Clone(first).(*runtimeapi.LinuxContainerResources))
		if !same || !proto.Equal(first, second) {
			t.Errorf("unified %v: second pass changed %v into %v", sent, first, second)
		}
	}
}

// On v1 no CRI field carries blkio limits: the request passes unchanged.
func TestCreateContainerUnchangedOnV1(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	req := marshal(t, &runtimeapi.CreateContainerRequest{PodSandboxId: "p1",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}}})
	out, _, err := e.hook("CreateContainer").Before(context.Background(), req)
	if err != nil || string(out) != string(req) {
		t.Errorf("v1 CreateContainer changed (%v)", err)
	}
}

// With nothing to write (no policy, or no rule for the container), criguard makes
// no cgroup before start: the runtime's layout stays the runtime's.
func TestPrestartMakesNothingWithoutLimits(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "web", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Mu.Unlock()
	for _, p := range []*policy.Policy{mustPolicy(t, basePolicy), nil} {
		e.policy.Store(p)
		if _, _, err := e.hook("StartContainer").Before(context.Background(), marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"})); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(e.host.mount, rel)); !os.IsNotExist(err) {
			t.Errorf("policy %v: the container's cgroup was made though nothing is to be written there (%v)", p != nil, err)
		}
	}
}

// countCodec counts the CRI front end's decodes and encodes of intercepted messages.
func countCodec(e *testEnv) (decodes, encodes *int) {
	decodes, encodes = new(int), new(int)
	e.codec = &protoCodec{
		unmarshal: func(b []byte, m proto.Message) error { *decodes++; return proto.Unmarshal(b, m) },
		marshal:   func(m proto.Message) ([]byte, error) { *encodes++; return proto.Marshal(m) },
	}
	return decodes, encodes
}

// The io.max rewrite and the resources rewrite share one decode of CreateContainer
// and UpdateContainerResources and at most one decision (none when the container's
// decision under this policy is known), and one encode only when either changed
// something.
func TestCreateAndUpdateDecodeOnce(t *testing.T) {
	e, _ := newResourcesEnv(t, true)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	decodes, encodes := countCodec(e)
	decisions := countDecisions(e.svc)
	through := func(method string, req proto.Message, wantDecisions int) (changed bool) {
		t.Helper()
		*decodes, *encodes, *decisions = 0, 0, 0
		in := marshal(t, req)
		out, _, err := e.hook(method).Before(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		changed = string(out) != string(in)
		wantEncodes := 0
		if changed {
			wantEncodes = 1
		}
		if *decodes != 1 || *encodes != wantEncodes || *decisions != wantDecisions {
			t.Errorf("%s (changed %v): %d decodes, %d encodes and %d decisions, want 1, %d and %d", method, changed, *decodes, *encodes, *decisions, wantEncodes, wantDecisions)
		}
		return changed
	}
	create := func(namespace string) *runtimeapi.CreateContainerRequest {
		return &runtimeapi.CreateContainerRequest{PodSandboxId: "unknown-pod",
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 1 << 30}}},
			SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: namespace}}}
	}
	// A creation has no container ID yet: each decides.
	if !through("CreateContainer", create("batch"), 1) {
		t.Error("CreateContainer in a throttled namespace was not rewritten")
	}
	if through("CreateContainer", create("web"), 1) {
		t.Error("CreateContainer no rule matches was rewritten")
	}
	update := &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1",
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: 8192, MemoryLimitInBytes: 1 << 30}}
	if !through("UpdateContainerResources", update, 1) {
		t.Error("a looser UpdateContainerResources was not rewritten")
	}
	inPolicy := &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "c1",
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 1000, CpuPeriod: 100000,
			Unified: map[string]string{"pids.max": "5", "memory.high": "1000", "cpu.weight": "1",
				"io.max": "254:0 rbps=max wbps=1048576 riops=max wiops=max"}}}
	// c1 was decided at the update before, under the same policy.
	if through("UpdateContainerResources", inPolicy, 0) {
		t.Error("an UpdateContainerResources already within the policy was rewritten")
	}
}

// countDecisions counts the service's asks of the policy.
func countDecisions(svc *Service) *int {
	n := new(int)
	decide := svc.planner.decider
	svc.planner.decider = func(p *policy.Policy, w policy.Workload) policy.Decision { *n++; return decide(p, w) }
	return n
}

// A container start is one event: its request is decoded once and the policy asked
// once, from the lookup before the call to the read-back after it, on v1 and v2; a
// pod budget's start asks nothing more (the pod was decided at RunPodSandbox, and on
// v1 the siblings that split it at their starts).
func TestStartDecodesAndDecidesOnce(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			e, _ := newResourcesEnv(t, v2)
			e.runPod(t, "p1", "batch", "burstable", nil)
			e.fake.AddContainer("c1", "p1", "app")
			e.fake.Mu.Lock()
			rel := e.fake.Paths["c1"]
			e.fake.Mu.Unlock()
			e.host.mkdir(t, rel) // with the files the kernel gives a new cgroup
			decodes, encodes := countCodec(e)
			decisions := countDecisions(e.svc)
			if err := e.call(t, "StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "c1"}, &runtimeapi.StartContainerResponse{}); err != nil {
				t.Fatal(err)
			}
			if *decodes != 1 || *encodes != 0 || *decisions != 1 {
				t.Errorf("one start: %d decodes, %d encodes and %d decisions, want 1, 0 and 1", *decodes, *encodes, *decisions)
			}
			limits, err := e.host.io.Limits(filepath.Join(e.host.mount, rel))
			if err != nil || len(limits) != 1 || limits[0].WriteBPS != 1<<20 {
				t.Errorf("limits after start = %v (%v), want the rule's write_bps 1048576", limits, err)
			}
		})
	}
}

func TestPodBudgetStartDecidesOnce(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			e, _ := newResourcesEnv(t, v2)
			e.policy.Store(mustPolicy(t, basePolicy)) // rule "team": a pod-scope budget of 3 MiB/s
			podRel := e.runPod(t, "p1", "team", "burstable", nil)
			for i, name := range []string{"a", "b"} {
				id := fmt.Sprintf("c%d", i+1)
				decisions := countDecisions(e.svc)
				if _, err := e.startContainer(t, id, "p1", name); err != nil {
					t.Fatal(err)
				}
				// The create decides for the container, the start once more.
				if *decisions != 2 {
					t.Errorf("create and start of %s in a pod budget: %d decisions, want 2 (one per event)", id, *decisions)
				}
			}
			file, want := "io.max", "254:0 rbps=max wbps=3145728 riops=max wiops=max"
			if !v2 {
				file, want = "blkio.throttle.write_bps_device", ""
			}
			if got := e.host.file(t, podRel, file); got != want {
				t.Errorf("pod %s = %q, want %q", file, got, want)
			}
		})
	}
}

// A decision stands while the policy and what it matched on do: a pass that finds
// nothing new decides nothing, a reload decides again, and so does a pod that reads
// differently (a tighter pod annotation) under the same ID.
func TestDecisionsStandUntilPolicyOrWorkloadChange(t *testing.T) {
	e := newTestEnv(t, nil)
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	podRel := e.runPod(t, "p1", "team", "burstable", nil)
	if _, err := e.startContainer(t, "c1", "p1", "app"); err != nil {
		t.Fatal(err)
	}
	budget := func(want string) {
		t.Helper()
		if got := e.host.file(t, podRel, "io.max"); got != "254:0 rbps=max wbps="+want+" riops=max wiops=max" {
			t.Errorf("pod io.max = %q, want wbps=%s", got, want)
		}
	}
	pass := func() int {
		t.Helper()
		decisions := countDecisions(e.svc)
		if _, err := e.svc.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		return *decisions
	}
	budget("3145728")
	// The fake lists c1's image by another name than the create request gave: the
	// first pass decides c1 again on it, the next finds nothing new.
	pass()
	if n := pass(); n != 0 {
		t.Errorf("a pass with nothing new made %d decisions, want 0", n)
	}
	e.policy.Store(mustPolicy(t, strings.Replace(basePolicy, `write_bps = "3MiB"`, `write_bps = "2MiB"`, 1)))
	if n := pass(); n != 2 {
		t.Errorf("the pass after a reload made %d decisions, want 2 (the pod and c1)", n)
	}
	budget("2097152")
	e.fake.Mu.Lock()
	e.fake.Pods["p1"].Annotations = map[string]string{"criguard.io/write-bps": "1MiB"}
	e.fake.Mu.Unlock()
	if n := pass(); n != 2 {
		t.Errorf("the pass after the pod read differently made %d decisions, want 2 (the pod and c1, which reads its pod's annotations)", n)
	}
	budget("1048576")
}
