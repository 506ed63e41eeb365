package nriplugin

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice"
)

// fakeEngine records the events it sees and tightens like a policy giving every
// container cpu shares 126 and an io.max line.
type fakeEngine struct {
	mu       sync.Mutex
	events   []string
	observed []criservice.Container
	pods     []criservice.Pod
	created  []criservice.Container
	started  chan string
	pidsMax  uint64 // the policy's pids limit, which Updating reports
}

func (f *fakeEngine) note(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func (f *fakeEngine) Observe(pods []criservice.Pod, cs []criservice.Container) {
	f.note("observe")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods, f.observed = pods, cs
}
func (f *fakeEngine) PodStarted(_ context.Context, p criservice.Pod) { f.note("pod-started " + p.ID) }
func (f *fakeEngine) PodRemoved(id string)                           { f.note("pod-removed " + id) }

func (f *fakeEngine) tighten(res *runtimeapi.LinuxContainerResources) bool {
	changed := false
	if res.CpuShares == 0 || res.CpuShares > 126 {
		res.CpuShares, changed = 126, true
	}
	if res.Unified["io.max"] != "254:0 wbps=1048576" {
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		res.Unified["io.max"], changed = "254:0 wbps=1048576", true
	}
	return changed
}

func (f *fakeEngine) Creating(_ context.Context, _ criservice.Pod, ct criservice.Container, res *runtimeapi.LinuxContainerResources) bool {
	f.note("creating " + ct.ID)
	return f.tighten(res)
}

func (f *fakeEngine) Created(_ context.Context, pod criservice.Pod, ct criservice.Container) {
	f.note("created " + ct.ID)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, ct)
	f.pods = append(f.pods, pod)
}

func (f *fakeEngine) Starting(_ context.Context, id string) *criservice.Start {
	f.note("starting " + id)
	return &criservice.Start{}
}

func (f *fakeEngine) Started(_ context.Context, id string, st *criservice.Start) error {
	if st == nil {
		f.note("started-without-starting " + id)
	} else {
		f.note("started " + id)
	}
	if f.started != nil {
		f.started <- id
	}
	return nil
}

func (f *fakeEngine) Updating(_ context.Context, id string, res *runtimeapi.LinuxContainerResources) (*criservice.Update, bool) {
	f.note("updating " + id)
	return &criservice.Update{PidsMax: f.pidsMax}, f.tighten(res)
}
func (f *fakeEngine) Updated(_ context.Context, id string, _ *criservice.Update) {
	f.note("updated " + id)
}
func (f *fakeEngine) Stopped(_ context.Context, id string) { f.note("stopped " + id) }
func (f *fakeEngine) Removed(id string)                    { f.note("removed " + id) }

func (f *fakeEngine) saw(e string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.events {
		if x == e {
			return true
		}
	}
	return false
}

func (f *fakeEngine) eventList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeEngine) observedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, c := range f.observed {
		ids = append(ids, c.ID)
	}
	return ids
}

func newTestPlugin(t *testing.T, e *fakeEngine) *Plugin {
	t.Helper()
	p, err := New(Options{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.work.Wait)
	return p
}

func nriPod() *api.PodSandbox {
	return &api.PodSandbox{Id: "pod1", Name: "web", Namespace: "shop", Uid: "u1", Labels: map[string]string{"app": "web"},
		Linux: &api.LinuxPodSandbox{CgroupParent: "/kubepods/burstable/podu1"}}
}

func nriContainer(id string, shares uint64) *api.Container {
	return &api.Container{Id: id, PodSandboxId: "pod1", Name: "app", State: api.ContainerState_CONTAINER_RUNNING,
		Annotations: map[string]string{"io.kubernetes.cri.image-name": "docker.io/library/nginx:1"},
		Mounts: []*api.Mount{
			{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data", Options: []string{"rbind", "rw"}},
			{Destination: "/etc/resolv.conf", Type: "bind", Source: "/var/lib/containerd/sandboxes/x/resolv.conf", Options: []string{"rbind"}},
			{Destination: "/proc", Type: "proc", Source: "proc"},
		},
		Linux: &api.LinuxContainer{CgroupsPath: "/kubepods/burstable/podu1/" + id, Resources: &api.LinuxResources{
			Cpu:    &api.LinuxCPU{Shares: api.UInt64(shares), Cpus: "0-1"},
			Memory: &api.LinuxMemory{Limit: api.Int64(64 << 20)},
		}}}
}

func TestCreateContainerAdjustsOnlyWhatTheEngineTightened(t *testing.T) {
	e := &fakeEngine{}
	p := newTestPlugin(t, e)
	adj, updates, err := p.CreateContainer(context.Background(), nriPod(), nriContainer("c1", 1024))
	if err != nil || updates != nil {
		t.Fatalf("CreateContainer: %v, updates %v", err, updates)
	}
	if adj == nil {
		t.Fatal("no adjustment, want cpu shares and io.max")
	}
	res := adj.GetLinux().GetResources()
	if got := res.GetCpu().GetShares().GetValue(); got != 126 {
		t.Errorf("adjusted cpu shares = %d, want 126", got)
	}
	if res.GetCpu().GetCpus() != "" || res.GetMemory() != nil {
		t.Errorf("adjustment touches what the engine left alone: cpus %q memory %v", res.GetCpu().GetCpus(), res.GetMemory())
	}
	if got := res.GetUnified()["io.max"]; got != "254:0 wbps=1048576" {
		t.Errorf("adjusted io.max = %q", got)
	}
	if !e.saw("creating c1") || !e.saw("created c1") {
		t.Errorf("events = %v, want creating then created", e.events)
	}
	ct := e.created[0]
	if ct.CgroupsPath != "/kubepods/burstable/podu1/c1" || ct.Image != "docker.io/library/nginx:1" || ct.Name != "app" || ct.PodID != "pod1" {
		t.Errorf("engine got container %+v", ct)
	}
	if len(ct.Mounts) != 1 || ct.Mounts[0].ContainerPath != "/data" || !ct.MountsKnown {
		t.Errorf("engine got mounts %+v (known %v), want /data only: the runtime's own binds are no volumes", ct.Mounts, ct.MountsKnown)
	}
	if e.pods[0].CgroupParent != "/kubepods/burstable/podu1" || e.pods[0].Namespace != "shop" {
		t.Errorf("engine got pod %+v", e.pods[0])
	}
}

func TestCreateContainerAlreadyTightIsNotAdjusted(t *testing.T) {
	e := &fakeEngine{}
	p := newTestPlugin(t, e)
	c := nriContainer("c1", 100)
	c.Linux.Resources.Unified = map[string]string{"io.max": "254:0 wbps=1048576"}
	adj, _, err := p.CreateContainer(context.Background(), nriPod(), c)
	if err != nil || adj != nil {
		t.Fatalf("adjustment %v (err %v), want none: nothing is looser than the policy", adj, err)
	}
}

func TestStartThenPostStartCarryTheStart(t *testing.T) {
	e := &fakeEngine{started: make(chan string, 2)}
	p := newTestPlugin(t, e)
	ctx := context.Background()
	if err := p.StartContainer(ctx, nriPod(), nriContainer("c1", 2)); err != nil {
		t.Fatal(err)
	}
	if !e.saw("starting c1") {
		t.Fatal("StartContainer did not write the limits before the start")
	}
	if err := p.PostStartContainer(ctx, nriPod(), nriContainer("c1", 2)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.started:
	case <-time.After(5 * time.Second):
		t.Fatal("PostStartContainer never ran Started")
	}
	if !e.saw("started c1") {
		t.Errorf("events %v: Started did not get Starting's start", e.events)
	}
	// A post-start with no start seen (the plugin restarted between) still confirms.
	if err := p.PostStartContainer(ctx, nriPod(), nriContainer("c2", 2)); err != nil {
		t.Fatal(err)
	}
	<-e.started
	if !e.saw("started-without-starting c2") {
		t.Errorf("events %v", e.events)
	}
}

func TestUpdateContainerSupersedesALooserUpdateWithTheWholeSet(t *testing.T) {
	e := &fakeEngine{}
	p := newTestPlugin(t, e)
	asked := &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(2048), Cpus: "0-3"}, Memory: &api.LinuxMemory{Limit: api.Int64(128 << 20)},
		Pids: &api.LinuxPids{Limit: 50}}
	updates, err := p.UpdateContainer(context.Background(), nriPod(), nriContainer("c1", 1024), asked)
	if err != nil || len(updates) != 1 {
		t.Fatalf("updates %v, err %v: want one, tightened", updates, err)
	}
	r := updates[0].GetLinux().GetResources()
	if updates[0].ContainerId != "c1" || r.GetCpu().GetShares().GetValue() != 126 {
		t.Errorf("update %v, want c1 with shares 126", updates[0])
	}
	// The runtime replaces the resources with the update's: everything kubelet asked
	// for must travel with it.
	if r.GetCpu().GetCpus() != "0-3" || r.GetMemory().GetLimit().GetValue() != 128<<20 || r.GetPids().GetLimit() != 50 {
		t.Errorf("update lost what kubelet asked: %v", r)
	}
	if asked.GetCpu().GetShares().GetValue() != 2048 {
		t.Error("the request's resources were changed in place")
	}
	if err := p.PostUpdateContainer(context.Background(), nriPod(), nriContainer("c1", 126)); err != nil {
		t.Fatal(err)
	}
	p.work.Wait()
	if !e.saw("updated c1") {
		t.Errorf("events %v: no Updated after the update", e.events)
	}
}

func TestSynchronizeSeedsTheEngineAndTightensRunningContainers(t *testing.T) {
	e := &fakeEngine{}
	kicked := 0
	p, err := New(Options{Engine: e, Reconcile: func() { kicked++ }})
	if err != nil {
		t.Fatal(err)
	}
	stopped := nriContainer("gone", 1024)
	stopped.State = api.ContainerState_CONTAINER_STOPPED
	tight := nriContainer("tight", 100)
	tight.Linux.Resources.Unified = map[string]string{"io.max": "254:0 wbps=1048576"}
	updates, err := p.Synchronize(context.Background(), []*api.PodSandbox{nriPod()}, []*api.Container{nriContainer("loose", 1024), tight, stopped})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.observed) != 2 || len(e.pods) != 1 {
		t.Errorf("engine observed %d containers and %d pods, want 2 (not the stopped one) and 1", len(e.observed), len(e.pods))
	}
	if len(updates) != 1 || updates[0].ContainerId != "loose" || !updates[0].IgnoreFailure {
		t.Fatalf("updates %v, want one for the loose container", updates)
	}
	if kicked != 1 {
		t.Errorf("reconcile asked %d times, want once after the listing", kicked)
	}
	// The loose container now runs with what the update gave it: a reload that
	// changes nothing sends nothing more.
	if again := p.tightenLive(context.Background(), "test"); len(again) != 0 {
		t.Errorf("a second pass updates %v again", again)
	}
}

func TestRemovedContainersLeaveNothingBehind(t *testing.T) {
	e := &fakeEngine{}
	p := newTestPlugin(t, e)
	ctx := context.Background()
	_, _, _ = p.CreateContainer(ctx, nriPod(), nriContainer("c1", 1024))
	_ = p.StartContainer(ctx, nriPod(), nriContainer("c1", 126))
	if _, err := p.StopContainer(ctx, nriPod(), nriContainer("c1", 126)); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveContainer(ctx, nriPod(), nriContainer("c1", 126)); err != nil {
		t.Fatal(err)
	}
	if err := p.RemovePodSandbox(ctx, nriPod()); err != nil {
		t.Fatal(err)
	}
	p.work.Wait()
	p.mu.Lock()
	left := len(p.live) + len(p.starts) + len(p.updates)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d entries left for a removed container", left)
	}
	for _, want := range []string{"stopped c1", "removed c1", "pod-removed pod1"} {
		if !e.saw(want) {
			t.Errorf("events %v lack %q", e.events, want)
		}
	}
}

func TestPolicyChangedWithoutConnectionWaitsForTheListing(t *testing.T) {
	e := &fakeEngine{}
	p := newTestPlugin(t, e)
	_, _, _ = p.CreateContainer(context.Background(), nriPod(), nriContainer("c1", 1024))
	before := len(e.events)
	p.PolicyChanged(context.Background()) // no stub: nothing to send it through
	if len(e.events) != before {
		t.Errorf("PolicyChanged without a connection asked the engine: %v", e.events[before:])
	}
	if p.Ready() == nil {
		t.Error("Ready says registered with no connection")
	}
}

func TestRunRetriesAnAbsentSocketUntilCancelled(t *testing.T) {
	e := &fakeEngine{}
	p, err := New(Options{Engine: e, Socket: t.TempDir() + "/none.sock", Retry: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestDiffAndApply(t *testing.T) {
	before := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 100000, CpuPeriod: 100000, Unified: map[string]string{"memory.high": "1"}}
	after := &runtimeapi.LinuxContainerResources{CpuShares: 126, CpuQuota: 50000, CpuPeriod: 100000, Unified: map[string]string{"memory.high": "1", "pids.max": "40"}}
	d := diff(before, after)
	if d.cpuPeriod != nil || d.memoryLimit != nil || *d.cpuShares != 126 || *d.cpuQuota != 50000 || !maps.Equal(d.unified, map[string]string{"pids.max": "40"}) {
		t.Fatalf("diff = %s", d)
	}
	out := d.applyTo(nil)
	if out.GetCpu().GetShares().GetValue() != 126 || out.GetCpu().GetPeriod() != nil || out.GetUnified()["pids.max"] != "40" {
		t.Errorf("applyTo(nil) = %v", out)
	}
	if got := toCRI(out); got.CpuShares != 126 || got.CpuQuota != 50000 {
		t.Errorf("round trip = %v", got)
	}
}

// CRI-O 1.34's NRI gives an empty Container.Name: the name policy rules match comes
// from kubelet's label, or else from CRI-O's copy of the CRI metadata.
func TestContainerNameWhereTheRuntimeGivesNone(t *testing.T) {
	for _, tc := range []struct {
		what string
		c    *api.Container
		want string
	}{
		{"containerd's Name", &api.Container{Name: "app", Labels: map[string]string{"io.kubernetes.container.name": "label"}}, "app"},
		{"kubelet's label", &api.Container{Labels: map[string]string{"io.kubernetes.container.name": "app"},
			Annotations: map[string]string{crioMetadata: `{"name":"meta"}`}}, "app"},
		{"CRI-O's metadata", &api.Container{Annotations: map[string]string{crioMetadata: `{"name":"reloaded","attempt":1}`}}, "reloaded"},
		{"broken metadata", &api.Container{Annotations: map[string]string{crioMetadata: `{"name":`}}, ""},
		{"nothing", &api.Container{}, ""},
	} {
		if got := containerFromNRI(tc.c).Name; got != tc.want {
			t.Errorf("%s: name %q, want %q", tc.what, got, tc.want)
		}
	}
}

// An update carries the policy's pids limit when the one it would carry is unset
// or looser: CRI-O applies an update's whole set (runc update), and would write
// back the limit the container was created with over the pids.max criguard wrote.
func TestUpdatesCarryThePolicysPidsLimit(t *testing.T) {
	e := &fakeEngine{pidsMax: 30}
	p := newTestPlugin(t, e)
	for _, tc := range []struct {
		what string
		pids *api.LinuxPids
		want int64
	}{
		{"unset", nil, 30},
		{"unlimited", &api.LinuxPids{Limit: -1}, 30},
		{"looser", &api.LinuxPids{Limit: 50}, 30},
		{"stricter", &api.LinuxPids{Limit: 20}, 20},
	} {
		asked := &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(2048)}, Pids: tc.pids}
		updates, err := p.UpdateContainer(context.Background(), nriPod(), nriContainer("c1", 1024), asked)
		if err != nil || len(updates) != 1 {
			t.Fatalf("%s: updates %v, err %v: want one", tc.what, updates, err)
		}
		if got := updates[0].GetLinux().GetResources().GetPids().GetLimit(); got != tc.want {
			t.Errorf("%s pids in the request: update carries %d, want %d", tc.what, got, tc.want)
		}
	}

	// The listing at registration: a container whose cpu and io.max are in force
	// still gets an update for its pids, and only then.
	running := nriContainer("c2", 126)
	running.Linux.Resources.Unified = map[string]string{"io.max": "254:0 wbps=1048576"}
	running.Linux.Resources.Pids = &api.LinuxPids{Limit: -1}
	updates, err := p.Synchronize(context.Background(), []*api.PodSandbox{nriPod()}, []*api.Container{running})
	if err != nil || len(updates) != 1 || updates[0].GetLinux().GetResources().GetPids().GetLimit() != 30 {
		t.Fatalf("Synchronize: updates %v, err %v: want c2's pids brought to 30", updates, err)
	}
	if got := updates[0].GetLinux().GetResources().GetCpu().GetCpus(); got != "0-1" {
		t.Errorf("the update lost the container's cpuset: %q", got)
	}
	e.pidsMax = 0
	running.Linux.Resources.Pids = nil
	if updates, _ := p.Synchronize(context.Background(), []*api.PodSandbox{nriPod()}, []*api.Container{running}); len(updates) != 0 {
		t.Errorf("with no pids in the policy and the rest in force: updates %v, want none", updates)
	}
}
