package criservice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
)

// A systemd unit property on the same disk as criguard's limit: criguard leaves
// that key to systemd (no flapping on every daemon-reload) and says so, once.
func TestSystemdUnitPropertyIsLeftToSystemd(t *testing.T) {
	root := t.TempDir()
	e := newTestEnv(t, func(o *Options) { o.SystemdRoot = root })
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.splitPodBudget = false
	rel := scopedContainer(t, e, "cri-containerd")
	e.host.mkdir(t, rel)
	dropIn := filepath.Join(root, "etc/systemd/system.control/cri-containerd-c1.scope.d/50-IOWriteBandwidthMax.conf")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("[Scope]\nIOWriteBandwidthMax=/dev/vdb 2M\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// systemd's own line, as it writes it.
	e.write(t, rel, "io.max", "254:0 rbps=max wbps=2000000 riops=max wiops=max")
	for range 3 {
		e.reconcile(t)
	}
	// The read limit is criguard's; the write limit stays systemd's.
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=2097152 wbps=2000000 riops=max wiops=max" {
		t.Errorf("io.max = %q, want criguard's rbps beside systemd's wbps", got)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil || !strings.Contains(strings.Join(ex.Notes, "\n"), "IOWriteBandwidthMax") {
		t.Errorf("explain notes %q (%v), want the conflict named", ex.Notes, err)
	}
	if got := testutil.ToFloat64(e.metrics.conflicts.WithLabelValues("systemd")); got != 1 {
		t.Errorf("conflicts counted %v times over three passes, want once", got)
	}

	// A daemon-reload: systemd writes its whole line again, criguard's rbps with it.
	// The recheck of conflicted cgroups restores it without a reconcile pass.
	e.write(t, rel, "io.max", "254:0 rbps=max wbps=2000000 riops=max wiops=max")
	e.svc.RecheckConflicted(context.Background())
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=2097152 wbps=2000000 riops=max wiops=max" {
		t.Errorf("after systemd rewrote the line, the recheck left io.max = %q", got)
	}
	// The unit property goes: the cgroup is no longer watched.
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	e.svc.RecheckConflicted(context.Background())
	watched := 0
	e.svc.conflicted.Range(func(any, any) bool { watched++; return true })
	if watched != 0 {
		t.Errorf("%d cgroups still watched after the unit property went", watched)
	}
}

// A conflicted container that goes away is no longer rechecked.
func TestRecheckConflictedForgetsVanished(t *testing.T) {
	e := newTestEnv(t, nil)
	calls := 0
	e.svc.conflicted.Store("/gone", func(context.Context) error { calls++; return ErrUnknownContainer })
	e.svc.conflicted.Store("/kept", func(context.Context) error { return nil })
	e.svc.RecheckConflicted(context.Background())
	e.svc.RecheckConflicted(context.Background())
	if calls != 1 {
		t.Errorf("the vanished container was applied again %d times, want once", calls)
	}
	if _, ok := e.svc.conflicted.Load("/kept"); !ok {
		t.Errorf("a cgroup still in conflict was forgotten")
	}
}

// The recheck loop sleeps while nothing is conflicted and starts ticking when a
// conflict is recorded; it ends with its context either way.
func TestRecheckLoopWakesOnAConflict(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { (&Reconciler{Passes: e.svc}).recheckEvery(ctx, 5*time.Millisecond); close(done) }()
	time.Sleep(50 * time.Millisecond) // the loop is asleep by now
	var rechecks atomic.Int32
	e.svc.watchConflicts(Plan{Dir: "/c1", Conflicts: []string{"IOWriteBandwidthMax"}}, func(context.Context) error {
		rechecks.Add(1)
		return nil
	})
	for deadline := time.Now().Add(10 * time.Second); rechecks.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d rechecks within 10 s of a recorded conflict, want at least 2", rechecks.Load())
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the recheck loop did not end with its context")
	}
}

// Under the systemd driver the scope exists only once the container starts: Starting
// leaves the limits in a drop-in systemd reads as it makes the scope, Started removes
// it before the read-back, which must not take it for an operator's unit property.
func TestPreStartDropInCarriesLimitsIntoTheScope(t *testing.T) {
	e, rel, dropIn := preStartEnv(t)
	ctx := context.Background()
	st := e.svc.Starting(ctx, "c1")
	got, err := os.ReadFile(dropIn)
	if err != nil {
		t.Fatalf("no drop-in before the start: %v", err)
	}
	if !strings.HasSuffix(string(got), "[Scope]\nIOReadBandwidthMax=/dev/block/254:0 2097152\nIOWriteBandwidthMax=/dev/block/254:0 1048576\n") {
		t.Errorf("drop-in:\n%s\nwant the class's limits on 254:0 in the [Scope] section", got)
	}

	// The runtime starts the container: systemd makes the scope with the line.
	e.host.mkdir(t, rel)
	const line = "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max"
	e.write(t, rel, "io.max", line)
	if err := e.svc.Started(ctx, "c1", st); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Errorf("the drop-in is still there after the start (%v)", err)
	}
	if _, err := os.Stat(filepath.Dir(dropIn)); !os.IsNotExist(err) {
		t.Errorf("its empty directory is still there (%v)", err)
	}
	if got := e.host.file(t, rel, "io.max"); got != line {
		t.Errorf("io.max = %q after the start, want %q", got, line)
	}
	if got := testutil.ToFloat64(e.metrics.conflicts.WithLabelValues("systemd")); got != 0 {
		t.Errorf("criguard's own drop-in counted as %v systemd conflicts", got)
	}
	// The line is criguard's: a policy that drops it lifts it.
	e.policy.Store(mustPolicy(t, `class "x" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}`))
	e.reconcile(t)
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=max wbps=max riops=max wiops=max" {
		t.Errorf("io.max = %q after the policy dropped the class: the adopted line was not lifted", got)
	}
}

// preStartEnv is a v2 host under systemd whose container c1 (pod p1, namespace batch)
// has a Docker scope still to be made; it returns the scope's path and its drop-in's.
func preStartEnv(t *testing.T) (*testEnv, string, string) {
	root := t.TempDir()
	e := newTestEnv(t, func(o *Options) { o.SystemdRoot = root })
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.preStart = preStart{enabled: true, root: root}
	e.fake.Name = "docker" // cri-dockerd: the create request's io.max is lost
	rel := scopedContainer(t, e, "docker")
	e.host.mkdir(t, filepath.Dir(rel)) // the scope itself is still to be made
	return e, rel, filepath.Join(root, "run/systemd/system/docker-c1.scope.d", dropInName)
}

// containerd and CRI-O carry the create request's io.max into the scope themselves: a
// drop-in would only leave criguard's start-time limits in systemd's memory of the unit.
func TestPreStartDropInOnlyWhereTheRuntimeLosesUnified(t *testing.T) {
	for _, name := range []string{"containerd", "cri-o"} {
		e, rel, dropIn := preStartEnv(t)
		e.fake.Name = name
		ctx := context.Background()
		st := e.svc.Starting(ctx, "c1")
		if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
			t.Errorf("%s: a drop-in was written (%v)", name, err)
		}
		e.host.mkdir(t, rel) // runc made the scope; the line it wrote went with a restart
		if err := e.svc.Started(ctx, "c1", st); err != nil {
			t.Fatal(err)
		}
		if got, want := e.host.file(t, rel, "io.max"), "254:0 rbps=2097152 wbps=1048576 riops=max wiops=max"; got != want {
			t.Errorf("%s: io.max = %q after the start, want %q", name, got, want)
		}
	}
}

// A start the runtime refuses makes no scope: its drop-in goes at once.
func TestPreStartDropInGoesWhenTheStartIsRefused(t *testing.T) {
	e, _, dropIn := preStartEnv(t)
	hook := e.hook("StartContainer")
	req, err := proto.Marshal(&runtimeapi.StartContainerRequest{ContainerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	_, state, err := hook.Before(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); err != nil {
		t.Fatalf("no drop-in before the start: %v", err)
	}
	refused := errors.New("runtime: start refused")
	if err := hook.After(context.Background(), state, req, nil, refused); !errors.Is(err, refused) {
		t.Errorf("After returned %v, want the runtime's error", err)
	}
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Errorf("the drop-in of a refused start is still there (%v)", err)
	}
}

// A scope that exists already, a cgroupfs path, or a node without systemd on v2
// gets no drop-in.
func TestPreStartDropInOnlyForAScopeToBe(t *testing.T) {
	dir := t.TempDir()
	limits := []cgroup.IOLimit{{Device: cgroup.Device{Major: 8, Minor: 0}, WriteIOPS: 20}}
	on := preStart{enabled: true, root: dir}
	for _, c := range []struct {
		name string
		p    preStart
		plan Plan
		want string
	}{
		{"scope to be", on, Plan{ContainerID: "c", Dir: filepath.Join(dir, "x.slice/docker-c.scope"), Limits: limits, ScopeToBe: true}, "docker-c.scope"},
		{"scope exists", on, Plan{ContainerID: "c", Dir: filepath.Join(dir, "x.slice/docker-c.scope"), Limits: limits}, ""},
		{"cgroupfs", on, Plan{ContainerID: "c", Dir: filepath.Join(dir, "kubepods/pod1/c"), Limits: limits, ScopeToBe: true}, ""},
		{"pod slice", on, Plan{Dir: filepath.Join(dir, "kubepods-pod1.slice"), Limits: limits, ScopeToBe: true}, ""},
		{"no limits", on, Plan{ContainerID: "c", Dir: filepath.Join(dir, "x.slice/docker-c.scope"), ScopeToBe: true}, ""},
		{"disabled", preStart{root: dir}, Plan{ContainerID: "c", Dir: filepath.Join(dir, "x.slice/docker-c.scope"), Limits: limits, ScopeToBe: true}, ""},
	} {
		if got := c.p.unitFor(c.plan); got != c.want {
			t.Errorf("%s: unitFor = %q, want %q", c.name, got, c.want)
		}
	}
	if got := string(unitIOProperties(limits)); !strings.HasSuffix(got, "[Scope]\nIOWriteIOPSMax=/dev/block/8:0 20\n") {
		t.Errorf("properties:\n%s", got)
	}
}

// A crash between Starting and Started leaves a drop-in: the next start-up removes
// it and only it.
func TestPreStartDropInLeftoversRemovedAtStartUp(t *testing.T) {
	root := t.TempDir()
	unitDir := filepath.Join(root, "run/systemd/system/docker-c9.scope.d")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{dropInName, "10-operator.conf"} {
		if err := os.WriteFile(filepath.Join(unitDir, name), []byte("[Scope]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	newTestEnv(t, func(o *Options) { o.SystemdRoot, o.PreStartDropIns = root, true })
	if _, err := os.Stat(filepath.Join(unitDir, dropInName)); !os.IsNotExist(err) {
		t.Errorf("the leftover drop-in is still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(unitDir, "10-operator.conf")); err != nil {
		t.Errorf("the operator's drop-in beside it went: %v", err)
	}
}

// recordedUnitLimits records what criguard hands to systemd.
type recordedUnitLimits struct {
	calls [][]cgroup.UnitIOLimit
	fail  error // systemd does not answer
}

func (r *recordedUnitLimits) SetIOLimits(_ context.Context, unit string, limits []cgroup.UnitIOLimit) error {
	if unit != "cri-containerd-c1.scope" {
		return errors.New("unexpected unit " + unit)
	}
	if r.fail != nil {
		return r.fail
	}
	r.calls = append(r.calls, limits)
	return nil
}

const handoverPolicy = `
class "batch" {
  io {
    device     = "254:0"
    read_bps   = "2MiB"
    write_bps  = "1MiB"
    write_iops = %d
  }
}
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "batch"
}
`

// On a disk for which the container's scope has an I/O property of its own, criguard
// hands its other keys to systemd too, into the unit's entry for that disk, so that a
// daemon-reload writes them with the unit's instead of "max". Its own entries are
// never taken for the operator's; a key the operator sets later is left to them; a key
// criguard no longer wants is lifted in systemd too.
func TestLimitsHandedToAUnitWithItsOwnIOProperty(t *testing.T) {
	e, units, rel, property := handoverEnv(t)
	last := func() string {
		if len(units.calls) == 0 {
			return ""
		}
		return fmt.Sprint(units.calls[len(units.calls)-1])
	}

	// No property of the unit's own: nothing goes to systemd.
	e.reconcile(t)
	if len(units.calls) != 0 {
		t.Fatalf("handed %v to a unit without I/O properties", units.calls)
	}
	// The operator sets the write bandwidth on the scope, naming the disk /dev/vdb.
	property("IOWriteBandwidthMax", "IOWriteBandwidthMax=/dev/vdb 4000000\n")
	e.write(t, rel, "io.max", "254:0 rbps=max wbps=4000000 riops=max wiops=max")
	e.reconcile(t)
	want := fmt.Sprint([]cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: cgroup.Device{Major: 254}, ReadBPS: 2 << 20, WriteIOPS: 20}}})
	if len(units.calls) != 1 || last() != want {
		t.Fatalf("handed %v, want once %s: criguard's rbps and wiops in the unit's /dev/vdb entry, not the operator's wbps", units.calls, want)
	}
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=2097152 wbps=4000000 riops=max wiops=20" {
		t.Errorf("io.max = %q", got)
	}
	// systemd now holds them (its drop-ins list them): nothing more to hand, and
	// criguard's own entries are no conflict.
	property("IOReadBandwidthMax", "IOReadBandwidthMax=/dev/vdb 2097152\n")
	property("IOWriteIOPSMax", "IOWriteIOPSMax=/dev/vdb 20\n")
	e.reconcile(t)
	if len(units.calls) != 1 {
		t.Errorf("handed again what systemd holds: %v", units.calls)
	}
	plan, err := e.plan("c1", planOptions{})
	if err != nil || len(plan.Conflicts) != 1 || !strings.Contains(plan.Conflicts[0], "IOWriteBandwidthMax") {
		t.Errorf("conflicts %q (%v), want only the operator's IOWriteBandwidthMax", plan.Conflicts, err)
	}
	if ex, err := e.svc.reporter.Explain(context.Background(), "c1"); err != nil || !strings.Contains(strings.Join(ex.Notes, "\n"), "in its entry /dev/vdb too, so a daemon-reload keeps them") {
		t.Errorf("explain notes %q (%v), want the hand-over said", ex.Notes, err)
	}
	// A daemon-reload: systemd writes the whole line from its entries, criguard's keys with it.
	e.write(t, rel, "io.max", "254:0 rbps=2097152 wbps=4000000 riops=max wiops=20")
	e.reconcile(t)
	if len(units.calls) != 1 {
		t.Errorf("a reload with criguard's keys in place handed again: %v", units.calls)
	}
	// The policy drops write_iops: lifted in systemd too.
	e.policy.Store(mustPolicy(t, fmt.Sprintf(handoverPolicy, 30)))
	e.reconcile(t)
	want = fmt.Sprint([]cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: cgroup.Device{Major: 254}, WriteIOPS: 30}}})
	if last() != want {
		t.Errorf("after a policy edit handed %s, want the new wiops %s", last(), want)
	}
	property("IOWriteIOPSMax", "IOWriteIOPSMax=/dev/vdb 30\n")
	e.policy.Store(mustPolicy(t, strings.Replace(fmt.Sprintf(handoverPolicy, 30), "write_iops = 30", "", 1)))
	e.reconcile(t)
	want = fmt.Sprint([]cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: cgroup.Device{Major: 254}, WriteIOPS: cgroup.UnitLimitMax}}})
	if last() != want {
		t.Errorf("with write_iops gone handed %s, want it lifted %s", last(), want)
	}
	// The operator sets the read bandwidth too, to another value: theirs from now on.
	property("IOWriteIOPSMax", "")
	property("IOReadBandwidthMax", "IOReadBandwidthMax=/dev/vdb 3000000\n")
	n := len(units.calls)
	e.reconcile(t)
	if len(units.calls) != n {
		t.Errorf("handed %s over the operator's read bandwidth", last())
	}
	plan, _ = e.plan("c1", planOptions{})
	if len(plan.Conflicts) != 2 {
		t.Fatalf("conflicts %q, want the operator's two keys", plan.Conflicts)
	}
	// Each named with the file that sets it.
	for _, name := range []string{"IOReadBandwidthMax", "IOWriteBandwidthMax"} {
		if !slices.ContainsFunc(plan.Conflicts, func(c string) bool {
			return strings.Contains(c, "sets "+name+" on 254:0 (") && strings.Contains(c, "/50-"+name+".conf)")
		}) {
			t.Errorf("conflicts %q, want %s from its own file", plan.Conflicts, name)
		}
	}
}

// A hand-over that fails after a policy edit leaves criguard's previous value in the
// unit's entry. It is still criguard's (the record keeps what systemd was handed): the
// next pass hands the new value instead of yielding to the stale one as an operator's,
// which would keep the old limit on every daemon-reload.
func TestFailedHandoverLeavesNoEntryForTheOperator(t *testing.T) {
	e, units, rel, property := handoverEnv(t)
	property("IOWriteBandwidthMax", "IOWriteBandwidthMax=/dev/vdb 4000000\n")
	e.write(t, rel, "io.max", "254:0 rbps=max wbps=4000000 riops=max wiops=max")
	e.reconcile(t)
	property("IOReadBandwidthMax", "IOReadBandwidthMax=/dev/vdb 2097152\n")
	property("IOWriteIOPSMax", "IOWriteIOPSMax=/dev/vdb 20\n")
	// write_iops goes to 10 while systemd does not answer: its entry keeps 20.
	units.fail = errors.New("systemd does not answer")
	e.policy.Store(mustPolicy(t, fmt.Sprintf(handoverPolicy, 10)))
	e.reconcile(t)
	units.fail = nil
	e.reconcile(t)
	want := fmt.Sprint([]cgroup.UnitIOLimit{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: cgroup.Device{Major: 254}, WriteIOPS: 10}}})
	if len(units.calls) != 2 || fmt.Sprint(units.calls[1]) != want {
		t.Errorf("handed %v, want the new wiops %s once systemd answers", units.calls, want)
	}
	if got := e.host.file(t, rel, "io.max"); got != "254:0 rbps=2097152 wbps=4000000 riops=max wiops=10" {
		t.Errorf("io.max = %q, want criguard's new wiops", got)
	}
	property("IOWriteIOPSMax", "IOWriteIOPSMax=/dev/vdb 10\n") // systemd took it
	if plan, err := e.plan("c1", planOptions{}); err != nil || len(plan.Conflicts) != 1 ||
		!strings.Contains(plan.Conflicts[0], "sets IOWriteBandwidthMax on 254:0 (") || !strings.Contains(plan.Conflicts[0], "/50-IOWriteBandwidthMax.conf)") {
		t.Errorf("conflicts %q (%v), want only the operator's IOWriteBandwidthMax, from its file", plan.Conflicts, err)
	}
}

// handoverEnv is a v2 host whose container c1 runs in a systemd scope, criguard
// handing to a recorder; property writes one of the scope's transient drop-ins as
// systemd does.
func handoverEnv(t *testing.T) (*testEnv, *recordedUnitLimits, string, func(name, entries string)) {
	t.Helper()
	root := t.TempDir()
	units := &recordedUnitLimits{}
	e := newTestEnv(t, func(o *Options) { o.SystemdRoot, o.UnitLimits = root, units })
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.policy.Store(mustPolicy(t, fmt.Sprintf(handoverPolicy, 20)))
	rel := scopedContainer(t, e, "cri-containerd")
	e.host.mkdir(t, rel)
	unitDir := filepath.Join(root, "run/systemd/transient/cri-containerd-c1.scope.d")
	property := func(name, entries string) {
		t.Helper()
		if err := os.MkdirAll(unitDir, 0o755); err != nil {
			t.Fatal(err)
		}
		// As systemd writes a set-property: a reset, then every entry it holds.
		if err := os.WriteFile(filepath.Join(unitDir, "50-"+name+".conf"), []byte("[Scope]\n"+name+"=\n"+entries), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e, units, rel, property
}

// systemd writes each entry's whole line, and an entry of criguard's under another
// spelling of the disk (Docker's pre-start drop-in, kept in systemd's memory) sits
// beside the operator's: criguard's keys go into the operator's entry, and nothing is
// ever set on the other, nor lifted in the operator's.
func TestHandoverNeverTouchesAnotherEntry(t *testing.T) {
	e, units, rel, property := handoverEnv(t)
	e.reconcile(t) // criguard owns rbps, wbps and wiops
	property("IOWriteBandwidthMax", "IOWriteBandwidthMax=/dev/block/254:0 1048576\nIOWriteBandwidthMax=/dev/vdb 4000000\n")
	e.write(t, rel, "io.max", "254:0 rbps=max wbps=4000000 riops=max wiops=max")
	e.reconcile(t)
	want := fmt.Sprint([][]cgroup.UnitIOLimit{{{Path: "/dev/vdb", IOLimit: cgroup.IOLimit{Device: cgroup.Device{Major: 254}, ReadBPS: 2 << 20, WriteIOPS: 20}}}})
	if got := fmt.Sprint(units.calls); got != want {
		t.Errorf("handed %s, want only criguard's rbps and wiops in the operator's /dev/vdb entry: %s", got, want)
	}
}

// scopedContainer registers container c1 of pod p1 (namespace batch) in a systemd
// scope of the runtime's prefix (cri-containerd, docker) under the pod's slice, as
// kubelet's systemd driver and the runtime name them, and returns the scope's cgroup.
func scopedContainer(t *testing.T, e *testEnv, prefix string) string {
	t.Helper()
	e.fake.AddPod("p1", "batch", "pod-p1", "burstable", nil)
	const slice = "kubepods-burstable-podX.slice"
	e.fake.Mu.Lock()
	e.fake.Parents["p1"] = slice
	e.fake.Mu.Unlock()
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	e.fake.Paths["c1"] = slice + ":" + prefix + ":c1"
	e.fake.Mu.Unlock()
	return "/kubepods.slice/kubepods-burstable.slice/" + slice + "/" + prefix + "-c1.scope"
}
