package criservice

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/internal/fakeruntime"
	"github.com/criguard/criguard/policy"
)

const basePolicy = `
device "data" {
  path = "254:0"
}
class "bulk" {
  io {
    device    = "data"
    write_bps = "1MiB"
    read_bps  = "2MiB"
  }
}
class "crawl" {
  io {
    device     = "data"
    write_iops = 20
  }
}
class "shared" {
  io {
    device    = "data"
    write_bps = "3MiB"
  }
}
rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
  }
  class = "bulk"
}
rule "team" {
  match {
    namespaces = ["team"]
  }
  class = "shared"
  scope = "pod"
}
annotations {
  enabled       = true
  classes       = ["crawl"]
  max_write_bps = "10MiB"
}
`

type testEnv struct {
	svc     *Service
	codec   *protoCodec // nil: proto's
	fake    *fakeruntime.Runtime
	host    *fakeHost
	policy  atomic.Pointer[policy.Policy]
	metrics *Metrics
}

func newTestEnv(t testing.TB, configure func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{fake: fakeruntime.New(), host: newFakeHost(t)}
	e.policy.Store(mustPolicy(t, basePolicy))
	rt, _ := fakeruntime.Serve(t, e.fake)
	e.metrics = NewMetrics(prometheus.NewRegistry())
	opts := Options{
		Runtime:  rt,
		IO:       e.host.io,
		Resolver: criResolver(t, rt),
		Devices:  fakeDevices{},
		Policy:   e.policy.Load,
		Metrics:  e.metrics,
	}
	if configure != nil {
		configure(&opts)
	}
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

// criResolver finds cgroups by CRI verbose status, as containerd and CRI-O give it.
func criResolver(t testing.TB, rt runtimeapi.RuntimeServiceClient) Resolver {
	t.Helper()
	r, err := resolve.New(resolve.Config{Mode: "cri", Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// seriesSum adds up the series of the counter or gauge name in reg that carry a
// label of value labelValue (every series of it when labelValue is "").
func seriesSum(tb testing.TB, reg prometheus.Gatherer, name, labelValue string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := labelValue == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == labelValue
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plan decides on a container and plans it, as a call would.
func (e *testEnv) plan(id string, po planOptions) (Plan, error) {
	t, err := e.svc.planner.containerTarget(context.Background(), id)
	if err != nil {
		return Plan{ContainerID: id}, err
	}
	return e.svc.planner.planContainer(context.Background(), &t, po)
}

// call passes one call through its hook as the proxy does: Before, then After with
// the state Before returned and the request it may have rewritten.
func (e *testEnv) call(t testing.TB, method string, req, resp proto.Message) error {
	t.Helper()
	h := e.hook(method)
	reqB, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var state any
	if h.Before != nil {
		out, st, err := h.Before(context.Background(), reqB)
		if err != nil {
			return err
		}
		reqB, state = out, st
	}
	if h.After == nil {
		return nil
	}
	var respB []byte
	if resp != nil {
		if respB, err = proto.Marshal(resp); err != nil {
			t.Fatal(err)
		}
	}
	return h.After(context.Background(), state, reqB, respB, nil)
}

func (e *testEnv) hook(method string) Hook {
	f := newCRIFront(e.svc)
	if e.codec != nil {
		f.codec = *e.codec
	}
	return f.hooks()[runtimeService+method]
}

// runPod creates a pod in the fake runtime and its cgroup, and passes
// RunPodSandbox through the service's hook as the proxy would.
func (e *testEnv) runPod(t testing.TB, id, namespace, qos string, annotations map[string]string) string {
	t.Helper()
	cfg := e.fake.AddPod(id, namespace, "pod-"+id, qos, annotations)
	e.host.mkdir(t, cfg.Linux.CgroupParent)
	err := e.hook("RunPodSandbox").After(context.Background(), nil,
		marshal(t, &runtimeapi.RunPodSandboxRequest{Config: cfg}),
		marshal(t, &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}), nil)
	if err != nil {
		t.Fatalf("RunPodSandbox hook: %v", err)
	}
	return cfg.Linux.CgroupParent
}

// removeInRuntime removes container id and its cgroup from the fake runtime, as a
// runtime does before its RemoveContainer reply. The cgroup is renamed away rather
// than removed: cgroupfs tells a watch nothing of a removed cgroup, and a rename
// tells it nothing either, where an rmdir here would (IN_IGNORED).
func (e *testEnv) removeInRuntime(t testing.TB, id string) {
	t.Helper()
	e.fake.Mu.Lock()
	dir := filepath.Join(e.host.mount, e.fake.Paths[id])
	delete(e.fake.Containers, id)
	delete(e.fake.Paths, id)
	e.fake.Mu.Unlock()
	if err := os.Rename(dir, dir+".removed"); err != nil {
		t.Fatal(err)
	}
}

// startContainer creates and starts a container through the hooks.
func (e *testEnv) startContainer(t testing.TB, id, podID, name string) (string, error) {
	t.Helper()
	e.fake.AddContainer(id, podID, name)
	e.fake.Mu.Lock()
	rel := e.fake.Paths[id]
	sandbox := e.fake.Pods[podID]
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel)
	err := e.call(t, "CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config:        &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "busybox"}},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: sandbox.Metadata, Annotations: sandbox.Annotations}},
		&runtimeapi.CreateContainerResponse{ContainerId: id})
	if err != nil {
		t.Fatalf("CreateContainer hook: %v", err)
	}
	err = e.call(t, "StartContainer", &runtimeapi.StartContainerRequest{ContainerId: id}, &runtimeapi.StartContainerResponse{})
	return rel, err
}

func TestStartAppliesMatchingRule(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "etl-7", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "worker")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("write_bps = %q, want 254:0 1048576", got)
	}
	if got := e.host.file(t, rel, "blkio.throttle.read_bps_device"); got != "254:0 2097152" {
		t.Errorf("read_bps = %q, want 254:0 2097152", got)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("applied", "container")); got != 1 {
		t.Errorf("applied counter = %v, want 1", got)
	}
}

func TestUnmatchedContainerGetsNothing(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "web", "besteffort", nil)
	rel, err := e.startContainer(t, "c1", "p1", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range throttleFiles[:4] {
		if got := e.host.file(t, rel, f); got != "" {
			t.Errorf("%s = %q, want untouched", f, got)
		}
	}
}

func TestPrecedenceAnnotationOverRule(t *testing.T) {
	e := newTestEnv(t, nil)
	// The namespace matches rule "batch" (write 1 MiB/s, read 2 MiB/s). The
	// container's own annotation picks class "crawl" and the pod asks for numbers:
	// both can only tighten the rule.
	e.runPod(t, "p1", "batch", "burstable", map[string]string{
		"blockio.resources.beta.kubernetes.io/container.db": "crawl",
		"criguard.io/write-bps":                             "512KiB",
	})
	relDB, err := e.startContainer(t, "c1", "p1", "db")
	if err != nil {
		t.Fatal(err)
	}
	relSide, err := e.startContainer(t, "c2", "p1", "sidecar")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, relDB, "blkio.throttle.write_iops_device"); got != "254:0 20" {
		t.Errorf("container annotation: write_iops = %q, want 254:0 20", got)
	}
	if got := e.host.file(t, relDB, "blkio.throttle.write_bps_device"); got != "254:0 524288" {
		t.Errorf("container annotation: write_bps = %q, want the pod's 254:0 524288", got)
	}
	if got := e.host.file(t, relSide, "blkio.throttle.write_bps_device"); got != "254:0 524288" {
		t.Errorf("pod annotation: write_bps = %q, want 254:0 524288", got)
	}
	if got := e.host.file(t, relSide, "blkio.throttle.read_bps_device"); got != "254:0 2097152" {
		t.Errorf("pod annotation: read_bps = %q, want the rule's 254:0 2097152 kept", got)
	}
}

func TestAbsurdAnnotationIsIgnoredAndCounted(t *testing.T) {
	for name, value := range map[string]string{
		"negative": "-5",
		"huge":     "1000000000000000000000000000000",
		"nan":      "NaN",
		"long":     strings.Repeat("9", 1<<20),
		"fraction": "0.5",
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			e.runPod(t, "p1", "batch", "burstable", map[string]string{"criguard.io/write-bps": value})
			rel, err := e.startContainer(t, "c1", "p1", "app")
			if err != nil {
				t.Fatal(err)
			}
			// The bad annotation is ignored; the namespace rule still applies.
			if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
				t.Errorf("write_bps = %q, want the rule's 254:0 1048576", got)
			}
			if got := testutil.ToFloat64(e.metrics.annotations.WithLabelValues("invalid")); got < 1 {
				t.Errorf("ignored-annotation counter = %v, want >= 1", got)
			}
		})
	}
}

// An annotation over the policy's bound is ignored and counted, never applied.
func TestAnnotationAboveBoundIsIgnored(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "web", "burstable", map[string]string{"criguard.io/write-bps": "1TiB"})
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "" {
		t.Errorf("write_bps = %q, want untouched", got)
	}
	if got := testutil.ToFloat64(e.metrics.annotations.WithLabelValues("above_max")); got != 1 {
		t.Errorf("criguard_annotations_ignored_total{reason=above_max} = %v, want 1", got)
	}
}

func TestPodScopeOnV2WritesPodCgroupOnly(t *testing.T) {
	e := newTestEnv(t, func(o *Options) {})
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.splitPodBudget = false
	podRel := e.runPod(t, "p1", "team", "burstable", nil)
	if got := e.host.file(t, podRel, "io.max"); got != "254:0 rbps=max wbps=3145728 riops=max wiops=max" {
		t.Fatalf("pod io.max after RunPodSandbox = %q, want the 3 MiB/s budget", got)
	}
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "io.max"); got != "" {
		t.Errorf("container io.max = %q, want untouched: the pod holds the budget", got)
	}
}

// On v1 blk-throttle is not hierarchical: the pod budget is split among the
// pod's running containers and re-split as they start and stop.
func TestPodScopeOnV1SplitsBudget(t *testing.T) {
	e := newTestEnv(t, nil)
	podRel := e.runPod(t, "p1", "team", "burstable", nil)
	rel1, err := e.startContainer(t, "c1", "p1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel1, "blkio.throttle.write_bps_device"); got != "254:0 3145728" {
		t.Fatalf("alone in the pod: write_bps = %q, want the whole 3 MiB/s", got)
	}
	rel2, err := e.startContainer(t, "c2", "p1", "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{rel1, rel2} {
		if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1572864" {
			t.Errorf("%s with two containers: write_bps = %q, want half (1.5 MiB/s)", rel, got)
		}
	}
	if got := e.host.file(t, podRel, "blkio.throttle.write_bps_device"); got != "" {
		t.Errorf("pod cgroup write_bps = %q: a v1 pod limit binds nobody, write none", got)
	}
	// c2 stops: c1 gets the whole budget back.
	e.fake.Mu.Lock()
	e.fake.Containers["c2"].State = runtimeapi.ContainerState_CONTAINER_EXITED
	e.fake.Mu.Unlock()
	err = e.hook("StopContainer").After(context.Background(), nil, marshal(t, &runtimeapi.StopContainerRequest{ContainerId: "c2"}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel1, "blkio.throttle.write_bps_device"); got != "254:0 3145728" {
		t.Errorf("after the other stopped: write_bps = %q, want 3 MiB/s again", got)
	}
}

func TestFailOpenWhenCgroupMissing(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app") // no cgroup directory made
	err := e.hook("StartContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"}), nil, nil)
	if err != nil {
		t.Fatalf("fail open: StartContainer got %v, want nil", err)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("failed", "container")); got != 1 {
		t.Errorf("failed counter = %v, want 1", got)
	}
	if len(e.fake.Stopped) != 0 {
		t.Errorf("fail open stopped containers %v", e.fake.Stopped)
	}
}

func TestFailClosedStopsContainer(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.FailClosed = true })
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	err := e.hook("StartContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"}), nil, nil)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("fail closed: got %v, want FailedPrecondition", err)
	}
	if len(e.fake.Stopped) != 1 || e.fake.Stopped[0] != "c1" {
		t.Errorf("stopped = %v, want [c1]", e.fake.Stopped)
	}
}

func TestUpstreamErrorPassesThroughUntouched(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.FailClosed = true })
	want := status.Error(codes.NotFound, "no such container")
	for _, m := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "UpdateContainerResources", "RemoveContainer", "RemovePodSandbox"} {
		if got := e.hook(m).After(context.Background(), nil, nil, nil, want); got != want {
			t.Errorf("%s: error changed to %v", m, got)
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.DryRun = true })
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "" {
		t.Errorf("dry run wrote %q", got)
	}
	plan, result, err := e.svc.ApplyContainer(context.Background(), "c1")
	if err != nil || result != resultWouldApply || len(plan.Limits) != 1 {
		t.Errorf("dry run plan = %+v, %v, %v; want one limit that would be applied", plan.Limits, result, err)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("applied", "container")); got != 0 {
		t.Errorf("dry run counted %v throttles applied", got)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("would_apply", "container")); got < 1 {
		t.Errorf("dry run counted %v throttles that would apply, want >= 1", got)
	}
}

func TestVanishedContainerIsNotAFailure(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	err := e.hook("StartContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "gone"}), nil, nil)
	if err != nil {
		t.Fatalf("got %v", err)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("failed", "container")); got != 0 {
		t.Errorf("failed counter = %v for a vanished container, want 0", got)
	}
}

func TestHostileCgroupsPathIsRefused(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	outside := filepath.Join(filepath.Dir(e.host.mount), "victim")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range throttleFiles {
		os.WriteFile(filepath.Join(outside, f), nil, 0o644)
	}
	e.fake.AddContainer("evil", "p1", "app")
	e.fake.Mu.Lock()
	e.fake.Paths["evil"] = "/../victim"
	e.fake.Mu.Unlock()
	_, _, err := e.svc.ApplyContainer(context.Background(), "evil")
	if err == nil {
		t.Fatal("a cgroupsPath escaping the mount was accepted")
	}
	b, _ := os.ReadFile(filepath.Join(outside, "blkio.throttle.write_bps_device"))
	if len(b) != 0 {
		t.Fatalf("wrote %q outside the cgroup mount", b)
	}
}

func TestUnknownDeviceFailsOpenWithReason(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "c" {
  io {
    device    = "/not/a/disk"
    write_bps = "1MiB"
  }
}
rule "all" {
  class = "c"
}
`))
	e.runPod(t, "p1", "x", "burstable", nil)
	_, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatalf("fail open: %v", err)
	}
	_, _, err = e.svc.ApplyContainer(context.Background(), "c1")
	if err == nil || !strings.Contains(err.Error(), "no block device") {
		t.Fatalf("ApplyContainer error = %v, want the device's reason", err)
	}
}

func TestReconcileAfterRestartDriftAndPolicyChange(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	// A container started behind criguard's back.
	e.fake.AddContainer("c2", "p1", "late")
	e.fake.Mu.Lock()
	rel2 := e.fake.Paths["c2"]
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel2)
	// Drift: someone cleared c1's limit.
	os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.write_bps_device"), []byte("254:0 0"), 0o644)

	// A restarted criguard has an empty cache: a fresh Service over the same runtime.
	restarted := newTestEnvSharing(t, e)
	res, err := restarted.svc.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Containers != 2 || res.Fixed != 2 || res.Failed != 0 {
		t.Errorf("reconcile = %+v, want 2 containers checked, 2 fixed", res)
	}
	for _, r := range []string{rel, rel2} {
		if got := e.host.file(t, r, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
			t.Errorf("%s write_bps = %q after reconcile", r, got)
		}
	}
	if got := testutil.ToFloat64(restarted.metrics.drift); got != 2 {
		t.Errorf("drift counter = %v, want 2", got)
	}
	// A second pass finds nothing to do.
	if res, _ := restarted.svc.Reconcile(context.Background()); res.Fixed != 0 {
		t.Errorf("second pass fixed %d, want 0", res.Fixed)
	}
	// The policy no longer matches: limits are reset.
	restarted.policy.Store(mustPolicy(t, `rule "none" {
  match {
    namespaces = ["nothing"]
  }
  class = "x"
}
class "x" {
  io {
    device    = "254:0"
    write_bps = 1
  }
}`))
	if res, err := restarted.svc.Reconcile(context.Background()); err != nil || res.Fixed != 2 {
		t.Fatalf("after policy change: %+v, %v; want 2 resets", res, err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 0" {
		t.Errorf("write_bps = %q after reset, want 254:0 0", got)
	}
}

// newTestEnvSharing is a second Service (as after a restart) over e's runtime and cgroups.
func newTestEnvSharing(t *testing.T, e *testEnv) *testEnv {
	t.Helper()
	r := &testEnv{fake: e.fake, host: e.host, metrics: NewMetrics(prometheus.NewRegistry())}
	r.policy.Store(e.policy.Load())
	rt, _ := fakeruntime.Serve(t, e.fake)
	svc, err := New(Options{Runtime: rt, IO: e.host.io, Resolver: criResolver(t, rt), Devices: fakeDevices{}, Policy: r.policy.Load, Metrics: r.metrics})
	if err != nil {
		t.Fatal(err)
	}
	r.svc = svc
	return r
}

func TestConcurrentStartsAllThrottled(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	const n = 50
	rels := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		e.fake.AddContainer(id, "p1", id)
		e.fake.Mu.Lock()
		rels[i] = e.fake.Paths[id]
		e.fake.Mu.Unlock()
		e.host.mkdir(t, rels[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			errs <- e.hook("StartContainer").After(context.Background(), nil,
				marshal(t, &runtimeapi.StartContainerRequest{ContainerId: id}), nil, nil)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, rel := range rels {
		if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
			t.Errorf("%s: write_bps = %q", rel, got)
		}
	}
}

// kubelet sends the image ID in Image and the name from the pod spec in
// UserSpecifiedImage; image globs are written against the name.
func TestImageRuleMatchesTheUserSpecifiedName(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "c" {
  io {
    device    = "254:0"
    write_bps = "7MiB"
  }
}
rule "db" {
  match {
    images = ["registry.example/postgres:*"]
  }
  class = "c"
}
`))
	cfg := e.fake.AddPod("p1", "x", "p", "burstable", nil)
	e.host.mkdir(t, cfg.Linux.CgroupParent)
	e.fake.AddContainer("c1", "p1", "db")
	e.host.mkdir(t, e.fake.Paths["c1"])
	err := e.hook("CreateContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.CreateContainerRequest{PodSandboxId: "p1", SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "db"},
				Image: &runtimeapi.ImageSpec{Image: "sha256:0123abcd", UserSpecifiedImage: "registry.example/postgres:16"}}}),
		marshal(t, &runtimeapi.CreateContainerResponse{ContainerId: "c1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, _, err := e.svc.ApplyContainer(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Workload.Image != "registry.example/postgres:16" || plan.Decision.Rule != "db" {
		t.Fatalf("image %q decided %+v; want the user-specified name to match rule db", plan.Workload.Image, plan.Decision)
	}
}

// A tenant's junk criguard.io annotations cost one log line per reason and a hash in
// the cache, however many there are, and none again on the next pass.
func TestAnnotationFloodIsBounded(t *testing.T) {
	e := newTestEnv(t, nil)
	logs := &lockedBuffer{}
	e.svc.useLogger(slog.New(slog.NewTextHandler(logs, nil)))
	junk := map[string]string{"criguard.io/write-bps": "-1"}
	for i := range 14059 {
		junk[fmt.Sprintf("criguard.io/junk-%d", i)] = "x"
	}
	e.runPod(t, "p1", "batch", "burstable", junk)
	if _, err := e.startContainer(t, "c1", "p1", "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), `msg="annotation ignored"`); n < 1 || n > 4 {
		t.Errorf("%d log lines for the ignored annotations, want one per reason (at most 4):\n%.2000s", n, logs.String())
	}
	if len(logs.String()) > 16<<10 {
		t.Errorf("%d bytes of log for one container's annotations, want a bounded few", len(logs.String()))
	}
	if got := testutil.ToFloat64(e.metrics.annotations.WithLabelValues("invalid")); got != 14060 {
		t.Errorf("criguard_annotations_ignored_total{reason=invalid} = %v, want every one of 14,060 counted", got)
	}
}

// useIO moves a service to another cgroup hierarchy (a v2 fake host), as New
// would have set it up there.
func (s *Service) useIO(io cgroup.IO) {
	s.opts.IO, s.enforcer.io, s.planner.io, s.reporter.io = io, io, io, io
	s.settings = cgroup.NewSettings(io, s.opts.Controllers)
	s.reporter.settings = s.settings
	s.enforcer.specCarriesLimits = s.settings.RuntimeTakesUnified()
	s.planner.splitPodBudget = !io.Hierarchical()
}

// movingDevices resolves the policy's disk to whatever MAJ:MIN it has now, as a
// disk re-attached, enumerated differently after a reboot, or an LV re-activated.
type movingDevices struct {
	dev *atomic.Pointer[cgroup.Device]
}

func (m movingDevices) Resolve(string) (cgroup.Device, error) { return *m.dev.Load(), nil }

// A policy device whose MAJ:MIN changes is resolved again on the next pass: the
// new line is written and criguard's stale one lifted.
func TestReconcileFollowsADeviceThatMoved(t *testing.T) {
	var dev atomic.Pointer[cgroup.Device]
	dev.Store(&cgroup.Device{Major: 254, Minor: 0})
	e := newTestEnv(t, func(o *Options) { o.Devices = movingDevices{&dev} })
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	dev.Store(&cgroup.Device{Major: 254, Minor: 16})
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	limits, err := e.host.io.Limits(filepath.Join(e.host.mount, rel))
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 1 || limits[0] != (cgroup.IOLimit{Device: cgroup.Device{Major: 254, Minor: 16}, ReadBPS: 2 << 20, WriteBPS: 1 << 20}) {
		t.Errorf("limits after the disk moved = %v, want only 254:16's", limits)
	}
}

// useLogger sends every owner's log lines to l, as New would have.
func (s *Service) useLogger(l *slog.Logger) {
	s.log, s.store.log, s.planner.log, s.enforcer.log, s.reporter.log = l, l, l, l, l
}
