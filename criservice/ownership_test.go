package criservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

func (e *testEnv) reconcile(t *testing.T) {
	t.Helper()
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

func (e *testEnv) write(t testing.TB, rel, file, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.host.mount, rel, file), []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A limit another tool wrote (a runtime's blockio class, an NRI plugin, an
// operator) on a container the policy does not match survives every pass.
func TestForeignLimitSurvivesReconcile(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "web", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, rel, "blkio.throttle.write_bps_device", "254:0 5242880")
	for range 3 {
		e.reconcile(t)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 5242880" {
		t.Errorf("foreign write_bps = %q after reconcile, want it untouched", got)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil || len(ex.Foreign) != 1 {
		t.Errorf("explain shows foreign %v (%v), want the foreign limit", ex.Foreign, err)
	}
}

// criguard's own limit on a device, beside a foreign key: a reload that stops
// matching lifts criguard's and keeps the other.
func TestOwnLimitIsLiftedForeignKeyKept(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, rel, "blkio.throttle.read_iops_device", "254:0 300")
	e.policy.Store(mustPolicy(t, `class "x" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}`))
	e.reconcile(t)
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 0" {
		t.Errorf("criguard's write_bps = %q after the rule went, want lifted (254:0 0)", got)
	}
	if got := e.host.file(t, rel, "blkio.throttle.read_iops_device"); got != "254:0 300" {
		t.Errorf("foreign read_iops = %q, want kept", got)
	}
}

// The record of what criguard wrote survives a restart: a new process still
// lifts its own limit, and one without the record leaves it (fail safe).
func TestOwnershipSurvivesRestart(t *testing.T) {
	state := t.TempDir()
	e := newTestEnv(t, func(o *Options) { o.StateDir = state })
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	noRule := mustPolicy(t, `class "x" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}`)
	restart := func(stateDir string) *Service {
		svc, err := New(Options{Runtime: e.svc.opts.Runtime, IO: e.host.io, Resolver: e.svc.opts.Resolver,
			Devices: fakeDevices{}, StateDir: stateDir, Policy: func() *policy.Policy { return noRule }})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	if _, err := restart(t.TempDir()).Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("without criguard's record the limit looks foreign and must stay; got %q", got)
	}
	if _, err := restart(state).Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 0" {
		t.Errorf("with criguard's record its own limit is lifted; got %q", got)
	}
}

// No policy (missing, or broken with no last good one): hands off, nothing reset.
func TestNoPolicyIsHandsOff(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.policy.Store(nil)
	e.reconcile(t)
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("write_bps = %q with no policy, want the limit kept", got)
	}
}

// One device this node lacks does not drop the class: the other is applied, and
// the missing one is reported.
func TestMissingDeviceDoesNotDropTheClass(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "two" {
  io {
    device    = "/not/a/disk"
    write_bps = "1MiB"
  }
  io {
    device    = "254:0"
    read_bps  = "3MiB"
  }
}
rule "all" {
  class = "two"
}`))
	e.runPod(t, "p1", "web", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.host.file(t, rel, "blkio.throttle.read_bps_device"); got != "254:0 3145728" {
		t.Errorf("read_bps = %q, want the resolvable device throttled", got)
	}
	_, _, err = e.svc.ApplyContainer(context.Background(), "c1")
	if !errors.Is(err, ErrDeviceUnresolved) {
		t.Errorf("ApplyContainer error = %v, want ErrDeviceUnresolved reported", err)
	}
}

// The image a rule matched at CreateContainer is not replaced by the digest a
// listing gives, and after a restart it is recovered from the container's status.
func TestImageNameIsNeverForgotten(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "c" {
  io {
    device    = "254:0"
    write_bps = "1MiB"
  }
}
rule "images" {
  match {
    images = ["registry.example.com/*"]
  }
  class = "c"
}`))
	e.runPod(t, "p1", "web", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Containers["c1"].Image = &runtimeapi.ImageSpec{Image: "sha256:" + sixtyFour}
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel)
	ctx := context.Background()
	e.hook("CreateContainer").After(ctx, nil, marshal(t, &runtimeapi.CreateContainerRequest{PodSandboxId: "p1",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image: &runtimeapi.ImageSpec{Image: "sha256:" + sixtyFour, UserSpecifiedImage: "registry.example.com/app:1"}}}),
		marshal(t, &runtimeapi.CreateContainerResponse{ContainerId: "c1"}), nil)
	e.hook("StartContainer").After(ctx, nil, marshal(t, &runtimeapi.StartContainerRequest{ContainerId: "c1"}), nil, nil)
	for range 3 {
		e.reconcile(t)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("write_bps = %q after three passes, want the image rule's limit", got)
	}
	if ct, _ := e.svc.store.container("c1"); ct.Image != "registry.example.com/app:1" {
		t.Errorf("cached image = %q", ct.Image)
	}

	// A restart forgets the request; the status names the image again.
	e.fake.Mu.Lock()
	e.fake.StatusImages["c1"] = &runtimeapi.ImageSpec{Image: "registry.example.com/app:1"}
	e.fake.Mu.Unlock()
	restarted, err := New(e.svc.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if ct, _ := restarted.store.container("c1"); ct.Image != "registry.example.com/app:1" {
		t.Errorf("after a restart the image is %q, want the name from the container's status", ct.Image)
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("write_bps = %q after a restart, want the image rule's limit", got)
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// On v1 a pod budget is split among the containers that share it, not among
// containers with a decision of their own.
func TestPodShareCountsOnlyContainersSharingIt(t *testing.T) {
	e := newTestEnv(t, nil)
	e.policy.Store(mustPolicy(t, `
class "own" {
  io {
    device    = "254:0"
    write_bps = "5MiB"
  }
}
class "shared" {
  io {
    device    = "254:0"
    write_bps = "3MiB"
  }
}
rule "sidecars" {
  match {
    containers = ["sidecar"]
  }
  class = "own"
}
rule "team" {
  class = "shared"
  scope = "pod"
}`))
	e.runPod(t, "p1", "team", "burstable", nil)
	app, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	side, err := e.startContainer(t, "c2", "p1", "sidecar")
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	if got := e.host.file(t, app, "blkio.throttle.write_bps_device"); got != "254:0 3145728" {
		t.Errorf("app, the only container sharing the budget: write_bps = %q, want all 3 MiB/s", got)
	}
	if got := e.host.file(t, side, "blkio.throttle.write_bps_device"); got != "254:0 5242880" {
		t.Errorf("sidecar with its own rule: write_bps = %q, want 5 MiB/s", got)
	}
}

// --fail-closed covers pod scope: a container whose pod budget is not in place
// does not run.
func TestFailClosedNeedsThePodBudget(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.FailClosed = true })
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.splitPodBudget = false
	e.runPod(t, "p1", "team", "burstable", nil)
	// The pod's io.max cannot be read or written: its budget cannot be in place.
	e.fake.Mu.Lock()
	parent := e.fake.Parents["p1"]
	e.fake.Mu.Unlock()
	ioMax := filepath.Join(e.host.mount, parent, "io.max")
	if err := os.RemoveAll(ioMax); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ioMax, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := e.startContainer(t, "c1", "p1", "app")
	if err == nil {
		t.Fatal("a pod-scoped container started with its pod budget not in place under --fail-closed")
	}
	e.fake.Mu.Lock()
	stopped := e.fake.Stopped
	e.fake.Mu.Unlock()
	if len(stopped) != 1 || stopped[0] != "c1" {
		t.Errorf("stopped %v, want c1 stopped", stopped)
	}
}

// A reconcile pass between CreateContainer and StartContainer keeps what was
// learned at CreateContainer (the image name, the mounts), though the container
// is not running yet.
func TestPassBetweenCreateAndStartKeepsTheContainer(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	e.fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_CREATED
	e.fake.Mu.Unlock()
	e.hook("CreateContainer").After(context.Background(), nil, marshal(t, &runtimeapi.CreateContainerRequest{PodSandboxId: "p1",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image: &runtimeapi.ImageSpec{Image: "sha256:" + sixtyFour, UserSpecifiedImage: "registry.example.com/app:1"}}}),
		marshal(t, &runtimeapi.CreateContainerResponse{ContainerId: "c1"}), nil)
	e.reconcile(t)
	if ct, ok := e.svc.store.container("c1"); !ok || ct.Image != "registry.example.com/app:1" {
		t.Errorf("after a pass between create and start the cache holds %+v (%v), want the image name kept", ct, ok)
	}
	// Exited and removed: gone from the cache.
	e.fake.Mu.Lock()
	delete(e.fake.Containers, "c1")
	e.fake.Mu.Unlock()
	e.reconcile(t)
	if _, ok := e.svc.store.container("c1"); ok {
		t.Error("a container the runtime no longer has is still cached")
	}
}

// webPolicy throttles namespace "web" to writeBPS on 254:0; "" matches nothing.
func webPolicy(t *testing.T, writeBPS string) *policy.Policy {
	t.Helper()
	if writeBPS == "" {
		return mustPolicy(t, `class "x" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}`)
	}
	return mustPolicy(t, `class "web" {
  io {
    device    = "254:0"
    write_bps = "`+writeBPS+`"
  }
}
rule "web" {
  match {
    namespaces = ["web"]
  }
  class = "web"
}`)
}

// startWithForeignLimit starts a container the policy does not match yet, and has
// another tool write a 5 MiB/s write limit into its cgroup.
func (e *testEnv) startWithForeignLimit(t *testing.T) string {
	t.Helper()
	e.policy.Store(webPolicy(t, ""))
	e.runPod(t, "p1", "web", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, rel, "blkio.throttle.write_bps_device", "254:0 5242880")
	return rel
}

// Issue 21, finding 7: a stricter policy takes a foreign limit over; when the rule
// stops matching the foreign limit comes back, not "unlimited", also across a restart.
func TestLiftPutsBackWhatStoodBefore(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			state := t.TempDir()
			e := newTestEnv(t, func(o *Options) { o.StateDir = state })
			rel := e.startWithForeignLimit(t)

			e.policy.Store(webPolicy(t, "1MiB"))
			e.reconcile(t)
			if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
				t.Fatalf("write_bps = %q under a 1 MiB/s rule, want criguard's 254:0 1048576", got)
			}
			if restart {
				svc, err := New(e.svc.opts)
				if err != nil {
					t.Fatal(err)
				}
				e.svc = svc
			}
			e.policy.Store(webPolicy(t, ""))
			e.reconcile(t)
			if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 5242880" {
				t.Errorf("write_bps = %q after the rule went, want the 5 MiB/s that stood before (254:0 5242880)", got)
			}
			if owned := e.svc.enforcer.owned.held(filepath.Join(e.host.mount, rel)); !owned.IsZero() {
				t.Errorf("criguard still holds %+v after letting go", owned)
			}
		})
	}
}

// A policy looser than a foreign limit leaves it; one stricter takes it over; one
// loosened again past it gives it back rather than loosening it.
func TestLoosenedPolicyGivesBackAStricterForeignLimit(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.StateDir = t.TempDir() })
	rel := e.startWithForeignLimit(t)
	for _, step := range []struct{ policy, want string }{
		{"10MiB", "254:0 5242880"}, // looser: the foreign limit is kept, as before
		{"1MiB", "254:0 1048576"},  // stricter: criguard's, 5 MiB/s remembered
		{"10MiB", "254:0 5242880"}, // looser again: the foreign limit is back
	} {
		e.policy.Store(webPolicy(t, step.policy))
		e.reconcile(t)
		if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != step.want {
			t.Fatalf("under a %s rule write_bps = %q, want %q", step.policy, got, step.want)
		}
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil || fmt.Sprint(ex.Foreign) != "[{254:0 0 5242880 0 0}]" {
		t.Errorf("explain shows foreign %v (%v), want the 5 MiB/s limit as another tool's", ex.Foreign, err)
	}
}

// An owned.json of the version before "previous" loads as "nothing stood before":
// its keys are cleared when criguard lets go, as that version did, while the keys
// the new version takes over remember what stood before, in the new format.
func TestOwnershipRecordWithoutPreviousLoads(t *testing.T) {
	state := t.TempDir()
	e := newTestEnv(t, nil)
	e.policy.Store(webPolicy(t, ""))
	e.runPod(t, "p1", "web", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.host.mount, rel)
	e.write(t, rel, "blkio.throttle.write_bps_device", "254:0 1048576") // criguard's, by the old record
	e.write(t, rel, "blkio.throttle.read_bps_device", "254:0 5242880")  // another tool's
	old, err := json.Marshal(map[string]any{"version": 1, "dirs": map[string]any{
		dir: []map[string]any{{"device": "254:0", "wbps": 1 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, OwnershipFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := e.svc.opts
	opts.StateDir = state
	if e.svc, err = New(opts); err != nil {
		t.Fatal(err)
	}
	e.policy.Store(mustPolicy(t, `class "web" {
  io {
    device    = "254:0"
    write_bps = "1MiB"
    read_bps  = "1MiB"
  }
}
rule "web" {
  match {
    namespaces = ["web"]
  }
  class = "web"
}`))
	e.reconcile(t)
	if got := e.host.file(t, rel, "blkio.throttle.read_bps_device"); got != "254:0 1048576" {
		t.Fatalf("read_bps = %q, want criguard's 254:0 1048576", got)
	}
	b, err := os.ReadFile(filepath.Join(state, OwnershipFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"previous":{"rbps":5242880}`; !strings.Contains(string(b), want) || !strings.Contains(string(b), `"version":2`) {
		t.Errorf("owned.json = %s, want version 2 with %s", b, want)
	}

	e.policy.Store(webPolicy(t, ""))
	e.reconcile(t)
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 0" {
		t.Errorf("write_bps = %q, want the old record's key cleared (254:0 0)", got)
	}
	if got := e.host.file(t, rel, "blkio.throttle.read_bps_device"); got != "254:0 5242880" {
		t.Errorf("read_bps = %q, want the 5 MiB/s that stood before (254:0 5242880)", got)
	}
}

// The record keeps what stood before across a save and a load.
func TestOwnershipRecordKeepsPrevious(t *testing.T) {
	path := filepath.Join(t.TempDir(), OwnershipFile)
	o, err := openOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	vda := cgroup.Device{Major: 254, Minor: 0}
	want := translate.NewOwnership([]cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadIOPS: 100}},
		[]cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}})
	if err := o.set("/sys/fs/cgroup/blkio/a", want); err != nil {
		t.Fatal(err)
	}
	loaded, err := openOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.held("/sys/fs/cgroup/blkio/a"); !got.Equal(want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
}

// A foreign limit equal to the policy's is adopted as it stands; when criguard
// lets go it stays, for another tool wrote it (on v1 nothing else writes there).
func TestEqualForeignLimitStaysWhenCriguardLetsGo(t *testing.T) {
	e := newTestEnv(t, nil)
	rel := e.startWithForeignLimit(t)
	e.policy.Store(webPolicy(t, "5MiB"))
	e.reconcile(t)
	e.policy.Store(webPolicy(t, ""))
	e.reconcile(t)
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 5242880" {
		t.Errorf("write_bps = %q after the rule went, want the foreign 254:0 5242880 kept", got)
	}
}

// On v2 the runtime writes criguard's io.max from the CreateContainer request: that
// line, found in place at start, is criguard's, and is lifted when the rule goes.
func TestIOMaxTheRuntimeWroteForCriguardIsLiftedV2(t *testing.T) {
	e := newIOMaxUpdateEnv(t)
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	sandbox := e.fake.Pods["p1"]
	e.fake.Mu.Unlock()
	e.host.mkdir(t, rel)
	// What runc writes from the unified io.max criguard put in the request.
	if err := os.WriteFile(filepath.Join(e.host.mount, rel, "io.max"), []byte(policyIOMax), 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.call(t, "CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "p1",
		Config:        &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: sandbox.Metadata}},
		&runtimeapi.CreateContainerResponse{ContainerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.call(t, "StartContainer", &runtimeapi.StartContainerRequest{ContainerId: "c1"}, &runtimeapi.StartContainerResponse{}); err != nil {
		t.Fatal(err)
	}
	e.policy.Store(webPolicy(t, ""))
	e.reconcile(t)
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=max wbps=max riops=max wiops=max" {
		t.Errorf("io.max = %q after the rule went, want criguard's line lifted", got)
	}
}

// What systemd was handed survives a restart, a lift takes the key out of it, and it
// goes with its cgroup.
func TestHandedValuesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), OwnershipFile)
	dir := t.TempDir()
	dev := cgroup.Device{Major: 254}
	o, err := openOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.recordHanded(dir, []cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: dev, ReadBPS: 5 << 20, WriteIOPS: 20}}}); err != nil {
		t.Fatal(err)
	}
	if err := o.recordHanded(dir, []cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: dev, WriteIOPS: cgroup.UnitLimitMax}}}); err != nil {
		t.Fatal(err)
	}
	o, err = openOwnership(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroup.IOLimit{{Device: dev, ReadBPS: 5 << 20}}
	if got := o.handedIn(dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after a restart handed = %v, want %v", got, want)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := o.prune(cgroupGoneAt); err != nil {
		t.Fatal(err)
	}
	if o, err = openOwnership(path); err != nil || len(o.handedIn(dir)) != 0 {
		t.Errorf("handed for a removed cgroup = %v (%v), want none", o.handedIn(dir), err)
	}
}
