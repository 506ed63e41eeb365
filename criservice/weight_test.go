package criservice

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

const weightPolicy = `
device "data" {
  path = "254:0"
}
class "gold" {
  io {
    device    = "data"
    weight    = 1000
    write_bps = "8MiB"
  }
}
class "team" {
  io {
    device = "data"
    weight = 50
  }
}
rule "gold" {
  match {
    namespaces = ["gold"]
  }
  class = "gold"
}
rule "team" {
  match {
    namespaces = ["team"]
  }
  class = "team"
  scope = "pod"
}
`

// weightEnv is a service on a fake host whose disk 254:0 runs scheduler.
func weightEnv(t *testing.T, v2 bool, scheduler string) *testEnv {
	t.Helper()
	sys := t.TempDir()
	queue := filepath.Join(sys, "dev", "block", "254:0", "queue")
	if err := os.MkdirAll(queue, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(queue, "scheduler"), []byte(scheduler+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := newFakeHost(t)
	if v2 {
		host = newFakeHostV2(t)
	}
	e := newTestEnv(t, func(o *Options) {
		o.IO = host.io
		o.Devices = cgroup.DeviceResolver{SysRoot: sys}
		o.StateDir = t.TempDir()
	})
	e.host = host
	e.svc.planner.splitPodBudget = !v2
	e.policy.Store(mustPolicy(t, weightPolicy))
	return e
}

// weightFiles makes the weight files the kernel offers in every cgroup under rel.
func weightFiles(t *testing.T, h *fakeHost, rel string, files ...string) {
	t.Helper()
	for dir := filepath.Join(h.mount, rel); dir != h.mount; dir = filepath.Dir(dir) {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, f), []byte("default 100\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWeightLandsInBFQFileOnV2(t *testing.T) {
	e := weightEnv(t, true, "mq-deadline kyber [bfq] none")
	e.fake.AddPod("p1", "gold", "pod-p1", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	rel := e.fake.Paths["c1"]
	e.host.mkdir(t, rel)
	weightFiles(t, e.host, rel, "io.bfq.weight", "io.weight")
	if _, _, err := e.svc.ApplyContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	// 1000 in io.weight units is 181 on BFQ's 1–1000 scale (systemd's mapping).
	if got := e.host.file(t, rel, "io.bfq.weight"); got != "254:0 181" {
		t.Errorf("io.bfq.weight = %q, want the device line 254:0 181", got)
	}
	if got := e.host.file(t, rel, "io.weight"); got != "default 100" {
		t.Errorf("io.weight = %q: BFQ devices take io.bfq.weight only", got)
	}
	if got := e.host.file(t, rel, "io.max"); !strings.Contains(got, "wbps=8388608") {
		t.Errorf("io.max = %q: the cap beside the weight was lost", got)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Weights) != 1 || !ex.Weights[0].Enforced || ex.Weights[0].File != "io.bfq.weight" || ex.Weights[0].Have != 181 {
		t.Fatalf("explain weights = %+v, want enforced on io.bfq.weight with 181 in force", ex.Weights)
	}
	if want := "the children of " + filepath.Dir(filepath.Join(e.host.mount, rel)); !strings.HasPrefix(ex.Weights[0].Siblings, want) {
		t.Errorf("siblings = %q, want %q…", ex.Weights[0].Siblings, want)
	}
	// status shows the weights too.
	reports, err := e.svc.reporter.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || len(reports[0].Weights) != 1 || reports[0].Weights[0].Have != 181 {
		t.Errorf("status = %+v, want c1 with its weight, 181 in force", reports)
	}
}

func TestWeightNotEnforcedIsSaidNotWritten(t *testing.T) {
	e := weightEnv(t, true, "[none] mq-deadline")
	e.fake.AddPod("p1", "gold", "pod-p1", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	rel := e.fake.Paths["c1"]
	e.host.mkdir(t, rel)
	weightFiles(t, e.host, rel, "io.weight")
	if _, _, err := e.svc.ApplyContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "io.weight"); got != "default 100" {
		t.Errorf("io.weight = %q: a device without BFQ or io.cost gets no line", got)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Weights) != 1 || ex.Weights[0].Enforced || !strings.HasPrefix(ex.Weights[0].Note, "not enforced: 254:0's scheduler none") {
		t.Fatalf("explain weights = %+v, want the weight listed as not enforced", ex.Weights)
	}
}

// A pod-scope weight is the pod's: on its cgroup, where it competes with the other
// pods, never on its containers (v1, BFQ).
func TestPodScopeWeightOnPodCgroupV1(t *testing.T) {
	e := weightEnv(t, false, "[bfq] none")
	podRel := e.fake.AddPod("p1", "team", "pod-p1", "burstable", nil).Linux.CgroupParent
	e.host.mkdir(t, podRel)
	weightFiles(t, e.host, podRel, "blkio.bfq.weight_device")
	pod, err := e.svc.store.lookupPod(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.ApplyPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, podRel, "blkio.bfq.weight_device"); got != "254:0 50" {
		t.Errorf("pod blkio.bfq.weight_device = %q, want 254:0 50", got)
	}
	e.fake.AddContainer("c1", "p1", "app")
	rel := e.fake.Paths["c1"]
	e.host.mkdir(t, rel)
	weightFiles(t, e.host, rel, "blkio.bfq.weight_device")
	if _, _, err := e.svc.ApplyContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.bfq.weight_device"); got != "default 100" {
		t.Errorf("container blkio.bfq.weight_device = %q: a pod-scope weight is the pod's only", got)
	}
}

// criguard lets go of its own lines only, and puts back what stood before; a line
// another tool wrote on another disk is never touched.
func TestWeightOwnershipAcrossRestart(t *testing.T) {
	e := weightEnv(t, true, "[bfq]")
	e.fake.AddPod("p1", "gold", "pod-p1", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	rel := e.fake.Paths["c1"]
	dir := e.host.mkdir(t, rel)
	weightFiles(t, e.host, rel, "io.weight")
	// Another tool's line on this disk, in the file criguard writes.
	if err := os.WriteFile(filepath.Join(dir, "io.bfq.weight"), []byte("default 100\n254:0 70\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.ApplyContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "io.bfq.weight"); got != "254:0 181" {
		t.Fatalf("io.bfq.weight = %q, want criguard's 181", got)
	}
	// A restart: a new service reads the record from the same state dir.
	state := e.svc.opts.StateDir
	restarted := newTestEnv(t, func(o *Options) {
		o.Runtime, o.Resolver = e.svc.opts.Runtime, e.svc.opts.Resolver
		o.IO, o.Devices, o.StateDir = e.host.io, e.svc.opts.Devices, state
	})
	restarted.policy.Store(mustPolicy(t, basePolicy)) // no weights any more
	if _, _, err := restarted.svc.ApplyContainer(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "io.bfq.weight"); got != "254:0 70" {
		t.Errorf("after letting go io.bfq.weight = %q, want the other tool's 70 back", got)
	}
	if held := restarted.svc.enforcer.weights.owned.held(dir); !held.IsZero() {
		t.Errorf("record still holds %+v after letting go", held)
	}
}

func TestSiblingSet(t *testing.T) {
	parent := t.TempDir()
	for _, name := range []string{"pod-a", "pod-b", "pod-c"} {
		if err := os.Mkdir(filepath.Join(parent, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := siblingSet(filepath.Join(parent, "pod-b"))
	if !strings.Contains(got, "2 sibling(s) (pod-a, pod-c)") {
		t.Errorf("siblingSet = %q, want pod-a and pod-c named", got)
	}
}

type recordedUnitWeights struct {
	unit    string
	weights []cgroup.IOWeight
}

func (r *recordedUnitWeights) SetDeviceWeights(_ context.Context, unit string, weights []cgroup.IOWeight) error {
	r.unit, r.weights = unit, weights
	return nil
}

// On a systemd unit the weight goes through systemd, which owns the files there and
// rewrites them on every daemon-reload; criguard writes no file itself.
func TestWeightOnSystemdUnitGoesThroughSystemd(t *testing.T) {
	e := weightEnv(t, true, "[bfq]")
	units := &recordedUnitWeights{}
	e.svc.enforcer.weights.units = units
	rel := "kubepods.slice/kubepods-burstable.slice/cri-containerd-abc.scope"
	dir := e.host.mkdir(t, rel)
	weightFiles(t, e.host, rel, "io.bfq.weight", "io.weight")
	plan := Plan{ContainerID: "abc", Dir: dir, Weights: []cgroup.IOWeight{{Device: cgroup.Device{Major: 254}, Weight: 1000}}}
	if err := e.svc.enforcer.weights.enforce(context.Background(), plan, "container", "abc"); err != nil {
		t.Fatal(err)
	}
	if units.unit != "cri-containerd-abc.scope" || len(units.weights) != 1 || units.weights[0].Weight != 1000 {
		t.Errorf("systemd asked %q %+v, want cri-containerd-abc.scope 254:0 1000 (io.weight units)", units.unit, units.weights)
	}
	if got := e.host.file(t, rel, "io.bfq.weight"); got != "default 100" {
		t.Errorf("io.bfq.weight = %q: on a unit only systemd writes", got)
	}
}

// After a restart the runtime's pod list carries no cgroup parent: a pod-scope
// weight on v1 still finds the pod's cgroup through its containers.
func TestPodScopeWeightFindsPodCgroupWithoutParent(t *testing.T) {
	e := weightEnv(t, false, "[bfq] none")
	podRel := e.fake.AddPod("p1", "team", "pod-p1", "burstable", nil).Linux.CgroupParent
	e.host.mkdir(t, podRel)
	weightFiles(t, e.host, podRel, "blkio.bfq.weight_device")
	e.fake.AddContainer("c1", "p1", "app")
	e.host.mkdir(t, e.fake.Paths["c1"])
	pod, err := e.svc.store.lookupPod(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	pod.CgroupParent = ""
	if _, _, err := e.svc.ApplyPod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, podRel, "blkio.bfq.weight_device"); got != "254:0 50" {
		t.Errorf("pod blkio.bfq.weight_device = %q, want 254:0 50 found through the container", got)
	}
}
