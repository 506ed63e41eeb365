package criservice

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

const resourcesPolicy = `
class "batch" {
  io {
    device    = "254:0"
    write_bps = "1MiB"
  }
  pids {
    max = 20
  }
  memory {
    high = "90%"
  }
  cpu {
    weight = 50
    max    = "500m"
  }
}
class "roomy" {
  pids {
    max = 4096
  }
  cpu {
    weight = 1000
  }
}
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "batch"
}
annotations {
  enabled      = true
  allow_loosen = true
  device       = "254:0"
  classes      = ["roomy"]
}
`

// fakeControllers are v1 controller mounts in a temp dir.
type fakeControllers map[string]string

func (f fakeControllers) ControllerMount(c string) (string, bool) {
	m, ok := f[c]
	return m, ok
}

func newResourcesEnv(t *testing.T, v2 bool) (*testEnv, fakeControllers) {
	t.Helper()
	root := t.TempDir()
	controllers := fakeControllers{"pids": filepath.Join(root, "pids"), "cpu": filepath.Join(root, "cpu")}
	e := newTestEnv(t, func(o *Options) { o.Controllers = controllers })
	if v2 {
		e.host = newFakeHostV2(t)
		e.svc.useIO(e.host.io)
	}
	e.policy.Store(mustPolicy(t, resourcesPolicy))
	return e, controllers
}

// createThrough passes a CreateContainer request through the hook and returns the
// resources the runtime gets.
func createThrough(t *testing.T, e *testEnv, podID, namespace string, annotations map[string]string, res *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	t.Helper()
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: podID,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Linux: &runtimeapi.LinuxContainerConfig{Resources: res}},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: namespace}, Annotations: annotations}}
	out, _, err := e.hook("CreateContainer").Before(context.Background(), marshal(t, req))
	if err != nil {
		t.Fatal(err)
	}
	var got runtimeapi.CreateContainerRequest
	if err := proto.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got.Config.GetLinux().GetResources()
}

func TestCreateContainerTightensResourcesV1(t *testing.T) {
	e, _ := newResourcesEnv(t, false)
	got := createThrough(t, e, "unknown-pod", "batch", nil, &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 1 << 30})
	want := &runtimeapi.LinuxContainerResources{CpuShares: 421, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 30}
	if !proto.Equal(got, want) {
		t.Errorf("v1 resources = %v, want %v (no unified keys: v1 runtimes refuse them)", got, want)
	}
	// kubelet's stricter values stay as they are.
	strict := &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuQuota: 10000, CpuPeriod: 100000}
	if got := createThrough(t, e, "unknown-pod", "batch", nil, proto.Clone(strict).(*runtimeapi.LinuxContainerResources)); !proto.Equal(got, strict) {
		t.Errorf("kubelet's stricter resources were changed: %v", got)
	}
	// A workload no rule gives resources passes untouched.
	free := &runtimeapi.LinuxContainerResources{CpuShares: 4096}
	if got := createThrough(t, e, "unknown-pod", "web", nil, proto.Clone(free).(*runtimeapi.LinuxContainerResources)); !proto.Equal(got, free) {
		t.Errorf("an unmatched container's resources were changed: %v", got)
	}
}

func TestCreateContainerResourcesBesideIOMaxV2(t *testing.T) {
	e, _ := newResourcesEnv(t, true)
	got := createThrough(t, e, "unknown-pod", "batch", nil, &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 1 << 30,
		Unified: map[string]string{"memory.min": "1000"}})
	want := map[string]string{
		"io.max":      "254:0 rbps=max wbps=1048576 riops=max wiops=max",
		"pids.max":    "20",
		"memory.high": "966367641",
		"cpu.weight":  "50",
		"memory.min":  "1000",
	}
	if len(got.Unified) != len(want) {
		t.Errorf("unified = %v, want %v", got.Unified, want)
	}
	for k, v := range want {
		if got.Unified[k] != v {
			t.Errorf("unified[%s] = %q, want %q", k, got.Unified[k], v)
		}
	}
	if got.CpuShares != 421 || got.CpuQuota != 50000 || got.MemoryLimitInBytes != 1<<30 {
		t.Errorf("resources = %v", got)
	}
	// Idempotent: what the runtime got, sent again, comes out the same.
	if again := createThrough(t, e, "unknown-pod", "batch", nil, proto.Clone(got).(*runtimeapi.LinuxContainerResources)); !proto.Equal(again, got) {
		t.Errorf("second pass changed the request: %v, then %v", got, again)
	}
}

// A tenant's annotation may pick a class, but never loosens the rule's resources,
// even where the operator lets I/O numbers loosen.
func TestPodAnnotationNeverLoosensResources(t *testing.T) {
	e, _ := newResourcesEnv(t, true)
	got := createThrough(t, e, "unknown-pod", "batch", map[string]string{"blockio.resources.beta.kubernetes.io/pod": "roomy"},
		&runtimeapi.LinuxContainerResources{CpuShares: 1024})
	if got.Unified["pids.max"] != "20" || got.Unified["cpu.weight"] != "50" || got.CpuShares != 421 {
		t.Errorf("an annotation loosened the rule's resources: %v", got)
	}
}

// kubelet's own UpdateContainerResources (a resize, or kubelet restoring its values)
// is tightened the same way, never loosened, and a second pass changes nothing.
func TestUpdateContainerResourcesTightensNeverLoosens(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		e, _ := newResourcesEnv(t, v2)
		e.runPod(t, "p1", "batch", "burstable", nil)
		e.fake.AddContainer("c1", "p1", "app")
		update := func(res *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, bool) {
			t.Helper()
			return updateThrough(t, e, "c1", res)
		}
		loose := &runtimeapi.LinuxContainerResources{CpuShares: 8192, CpuQuota: -1, MemoryLimitInBytes: 1 << 30,
			Unified: map[string]string{"pids.max": "max"}}
		got, same := update(loose)
		if same || got.CpuShares != 421 || got.CpuQuota != 50000 {
			t.Errorf("v2=%v: a looser update was not tightened: %v", v2, got)
		}
		if v2 && (got.Unified["pids.max"] != "20" || got.Unified["memory.high"] != "966367641") {
			t.Errorf("v2: unified = %v", got.Unified)
		}
		if !v2 && got.Unified["pids.max"] != "max" {
			t.Errorf("v1: unified keys are kubelet's to send: %v", got.Unified)
		}
		again, _ := update(proto.Clone(got).(*runtimeapi.LinuxContainerResources))
		if !proto.Equal(again, got) {
			t.Errorf("v2=%v: not idempotent: %v then %v", v2, got, again)
		}
		strict := &runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 1000, CpuPeriod: 100000,
			Unified: map[string]string{"pids.max": "5", "memory.high": "1000", "cpu.weight": "1"}}
		if !v2 {
			strict.Unified = nil
		} else {
			strict.Unified["io.max"] = "254:0 rbps=max wbps=1048576 riops=max wiops=max" // the I/O hook's own
		}
		if got, same := update(strict); !same {
			t.Errorf("v2=%v: a stricter update was rewritten: %v", v2, got)
		}
	}
}

// On v1 no CRI field carries pids: criguard writes pids.max into the container's
// pids cgroup before the runtime starts it, and never above a stricter value.
func TestPidsMaxInPlaceBeforeStartV1(t *testing.T) {
	e, controllers := newResourcesEnv(t, false)
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	if err := os.MkdirAll(filepath.Join(controllers["pids"], parent), 0o755); err != nil {
		t.Fatal(err)
	}
	e.fake.AddContainer("c1", "p1", "app")
	start := marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"})
	if _, _, err := e.hook("StartContainer").Before(context.Background(), start); err != nil {
		t.Fatal(err)
	}
	pidsMax := filepath.Join(controllers["pids"], parent, "c1", "pids.max")
	if _, err := os.Stat(filepath.Dir(pidsMax)); err != nil {
		t.Fatalf("the container's pids cgroup was not made before start: %v", err)
	}
	// The kernel makes pids.max with the directory; a temp dir does not.
	os.WriteFile(pidsMax, []byte("max\n"), 0o644)
	if _, _, err := e.hook("StartContainer").Before(context.Background(), start); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(pidsMax); err != nil || strings.TrimSpace(string(b)) != "20" {
		t.Fatalf("pids.max before start = %q (%v), want 20", b, err)
	}
	os.WriteFile(pidsMax, []byte("5\n"), 0o644)
	if err := e.hook("StartContainer").After(context.Background(), nil, start, nil, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pidsMax); strings.TrimSpace(string(b)) != "5" {
		t.Errorf("a stricter pids.max was loosened to %q", b)
	}
	// Drift (someone lifts it) is repaired by the reconcile loop.
	os.WriteFile(pidsMax, []byte("max\n"), 0o644)
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pidsMax); strings.TrimSpace(string(b)) != "20" {
		t.Errorf("reconcile left pids.max at %q, want 20", b)
	}
	os.WriteFile(pidsMax, []byte("5\n"), 0o644)
	// explain reads it back, and says memory.high cannot be enforced here.
	cpuDir := filepath.Join(controllers["cpu"], parent, "c1")
	os.MkdirAll(cpuDir, 0o755)
	os.WriteFile(filepath.Join(cpuDir, "cpu.shares"), []byte("421\n"), 0o644)
	os.WriteFile(filepath.Join(cpuDir, "cpu.cfs_quota_us"), []byte("-1\n"), 0o644)
	os.WriteFile(filepath.Join(cpuDir, "cpu.cfs_period_us"), []byte("100000\n"), 0o644)
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]ResourceState{}
	for _, st := range ex.Resources {
		states[st.File] = st
	}
	if st := states["pids.max"]; !st.InSync || st.Have != "5" || st.Want != "20" || !strings.Contains(st.Note, "tighter than the policy") {
		t.Errorf("pids.max state = %+v, want in sync with a note that the stricter 5 is kept", st)
	}
	if st := states["cpu.shares"]; !st.InSync || st.Want != "421" || st.Note != "" {
		t.Errorf("cpu.shares state = %+v", st)
	}
	if st := states["cpu.cfs_quota_us"]; st.InSync {
		t.Errorf("an unlimited quota reads as in sync: %+v", st)
	}
	if st := states["memory.high"]; st.InSync || !strings.Contains(st.Note, "v2 only") || st.Want == "" || strings.Contains(st.Want, "memory.high") {
		t.Errorf("memory.high state = %+v", st)
	}
	if !strings.Contains(strings.Join(ex.Notes, "\n"), "memory.high: not enforced") {
		t.Errorf("explain notes do not say memory.high is not enforced: %v", ex.Notes)
	}
}

// What a host can enforce, on fake v1, hybrid and v2 mount tables.
func TestResourceSupport(t *testing.T) {
	root := t.TempDir()
	v1 := "25 21 0:22 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n" +
		"26 21 0:23 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n" +
		"27 21 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	hybrid := v1 + "28 21 0:25 / " + root + "/unified rw - cgroup2 cgroup2 rw\n"
	v2 := "30 23 0:26 / " + root + "/v2 rw - cgroup2 cgroup2 rw\n"
	os.MkdirAll(filepath.Join(root, "unified"), 0o755)
	os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), []byte("hugetlb\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "v2"), 0o755)
	os.WriteFile(filepath.Join(root, "v2", "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb\n"), 0o644)

	all := policy.Resources{PidsMax: 20, MemoryHighPercent: 90, CPUWeight: 50}
	tests := []struct {
		name, mountinfo string
		want            []string
	}{
		{"v1", v1, []string{"memory.high: cgroup v1 has no soft memory ceiling"}},
		{"hybrid", hybrid, []string{"memory.high: cgroup v1 has no soft memory ceiling"}},
		{"v1 without pids", strings.ReplaceAll(v1, "rw,pids", "rw,name=pids"), []string{"pids.max: the v1 pids controller is not mounted", "memory.high"}},
		{"v2 without pids enabled", v2, []string{"pids.max: the pids controller is not enabled on the cgroup2 mount"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := cgroup.ParseMountInfo(strings.NewReader(tt.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			got := ResourceSupport(all, h)
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %q, want %d like %q", got, len(tt.want), tt.want)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want)
				}
			}
		})
	}
	h, _ := cgroup.ParseMountInfo(strings.NewReader(v2))
	if got := ResourceSupport(policy.Resources{MemoryHigh: 1 << 30, CPUWeight: 5}, h); len(got) != 0 {
		t.Errorf("v2 with memory and cpu enabled refused %q", got)
	}
}

// A dry run logs what it would tighten and forwards kubelet's request as it is.
func TestDryRunLeavesResourcesAlone(t *testing.T) {
	e, _ := newResourcesEnv(t, true)
	e.svc.opts.DryRun = true
	res := &runtimeapi.LinuxContainerResources{CpuShares: 1024}
	if got := createThrough(t, e, "unknown-pod", "batch", nil, proto.Clone(res).(*runtimeapi.LinuxContainerResources)); !proto.Equal(got, res) {
		t.Errorf("a dry run rewrote the request: %v", got)
	}
}

// status counts a container whose pids, memory or cpu drifted above the policy as
// not matching, and one whose host cannot enforce a setting (memory.high on v1) as
// matching what can be.
func TestStatusMatchesResources(t *testing.T) {
	e, controllers := newResourcesEnv(t, false)
	e.policy.Store(mustPolicy(t, `
class "few" {
  pids { max = 20 }
  memory { high = "1GiB" }
}
rule "batch" {
  match { namespaces = ["batch"] }
  class = "few"
}
`))
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.host.mkdir(t, parent+"/c1")
	pidsDir := filepath.Join(controllers["pids"], parent, "c1")
	writeCgroupFiles(t, pidsDir, map[string]string{"pids.max": "max\n"})
	row := func() Report {
		t.Helper()
		reports, err := e.svc.reporter.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reports {
			if r.ID == "c1" {
				return r
			}
		}
		t.Fatalf("no status row for c1: %+v", reports)
		return Report{}
	}
	if r := row(); r.Match || len(r.Resources) != 2 {
		t.Errorf("pids.max lifted: status %+v, want no match", r)
	}
	writeCgroupFiles(t, pidsDir, map[string]string{"pids.max": "20\n"})
	if r := row(); !r.Match {
		t.Errorf("pids.max in force: status %+v, want a match (memory.high cannot be enforced on v1)", r)
	}
}

// After start criguard reads back what the runtime wrote, and says what is not there.
func TestReadBackAfterStartV2(t *testing.T) {
	logs := &lockedBuffer{}
	e, _ := newResourcesEnv(t, true)
	e.svc.useLogger(slog.New(slog.NewTextHandler(logs, nil)))
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	dir := e.host.mkdir(t, parent+"/c1")
	writeCgroupFiles(t, dir, map[string]string{"pids.max": "20\n", "cpu.weight": "100\n", "cpu.max": "50000 100000\n",
		"memory.max": "1073741824\n", "memory.high": "max\n"})
	start := marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"})
	if err := e.hook("StartContainer").After(context.Background(), nil, start, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	for _, want := range []string{`file=cpu.weight want=50 have=100`, `file=memory.high want=966367641 have=max`} {
		if !strings.Contains(got, "resource not in force after start") || !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	for _, inForce := range []string{"file=pids.max", "file=cpu.max"} {
		if strings.Contains(got, inForce) {
			t.Errorf("a setting in force was reported: %s\n%s", inForce, got)
		}
	}
}

// lockedBuffer collects log lines from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A reload that tightens a class's CPU weight reaches a container already running:
// the next pass asks the runtime to update it from the resources it runs with,
// tightened. Passes without a reload, and a reload that would loosen, send nothing.
func TestReloadReachesRunningContainersResources(t *testing.T) {
	e, _ := newResourcesEnv(t, false)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	e.host.mkdir(t, e.fake.Paths["c1"])
	e.fake.Resources["c1"] = &runtimeapi.LinuxContainerResources{CpuShares: 421, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 30}
	e.fake.Mu.Unlock()
	updates := func() []*runtimeapi.UpdateContainerResourcesRequest {
		e.fake.Mu.Lock()
		defer e.fake.Mu.Unlock()
		return slices.Clone(e.fake.Updates)
	}
	reload := func(weight int) {
		t.Helper()
		e.policy.Store(mustPolicy(t, strings.Replace(resourcesPolicy, "weight = 50", fmt.Sprintf("weight = %d", weight), 1)))
		e.svc.PolicyChanged()
		if _, err := e.svc.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := updates(); len(got) != 0 {
		t.Fatalf("a pass with no reload updated the container: %v", got)
	}
	reload(20)
	got := updates()
	if len(got) != 1 || got[0].ContainerId != "c1" || uint64(got[0].Linux.CpuShares) != cgroup.CPUSharesFromWeight(20) {
		t.Fatalf("after a reload to weight 20: updates %v, want one for c1 with cpu_shares %d", got, cgroup.CPUSharesFromWeight(20))
	}
	if l := got[0].Linux; l.MemoryLimitInBytes != 1<<30 || l.CpuQuota != 50000 || l.CpuPeriod != 100000 {
		t.Errorf("the update changed what it should carry as it was: %v", l)
	}
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	reload(1000) // looser: kubelet's own value is never loosened by criguard
	if got := updates(); len(got) != 1 {
		t.Errorf("%d updates after a pass without reload and a loosening reload, want still 1: %v", len(got), got)
	}
}
