package criservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/internal/fakeruntime"
)

// tearingRuntime stops containers and removes their cgroups right after it answers
// reconcile's listing: the teardown race between listing and writing.
type tearingRuntime struct {
	*fakeruntime.Runtime
	mu       sync.Mutex
	tearDown map[string]string // container id → cgroup dir to remove
}

func (r *tearingRuntime) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	resp, err := r.Runtime.ListContainers(ctx, req)
	if req.GetFilter().GetId() != "" {
		return resp, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, dir := range r.tearDown {
		r.Mu.Lock()
		r.Containers[id].State = runtimeapi.ContainerState_CONTAINER_EXITED
		r.Mu.Unlock()
		os.RemoveAll(dir)
	}
	clear(r.tearDown)
	return resp, err
}

// A container listed as running whose cgroup is removed before criguard writes it
// was being torn down: reconcile logs it as vanished, not as an ERROR, and counts
// no failure. A running container whose cgroup is missing still is one.
// newTearingEnv is a test env on a tearingRuntime with pod p1; dir adds a running
// container to it and returns its cgroup directory (not made).
func newTearingEnv(t *testing.T) (e *testEnv, tearing *tearingRuntime, dir func(id string) string) {
	t.Helper()
	tearing = &tearingRuntime{Runtime: fakeruntime.New(), tearDown: map[string]string{}}
	e = newTestEnv(t, func(o *Options) {
		rt, _ := fakeruntime.ServeRuntime(t, tearing)
		o.Runtime, o.Resolver = rt, criResolver(t, rt)
	})
	e.fake = tearing.Runtime
	e.runPod(t, "p1", "batch", "burstable", nil)
	dir = func(id string) string {
		e.fake.AddContainer(id, "p1", "app-"+id)
		e.fake.Mu.Lock()
		defer e.fake.Mu.Unlock()
		return filepath.Join(e.host.mount, e.fake.Paths[id])
	}
	return e, tearing, dir
}

func TestReconcileCountsTeardownAsVanished(t *testing.T) {
	e, tearing, dir := newTearingEnv(t)
	logs := &lockedBuffer{}
	e.svc.useLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	applied := dir("applied") // throttled by an earlier pass: its cgroup dir is cached
	e.host.mkdir(t, strings.TrimPrefix(applied, e.host.mount))
	if res, err := e.svc.Reconcile(context.Background()); err != nil || res.Fixed != 1 || res.Failed != 0 {
		t.Fatalf("first pass: %+v, %v; want one fixed", res, err)
	}
	fresh := dir("fresh") // first seen by the pass that races its teardown
	e.host.mkdir(t, strings.TrimPrefix(fresh, e.host.mount))
	tearing.mu.Lock()
	tearing.tearDown["applied"], tearing.tearDown["fresh"] = applied, fresh
	tearing.mu.Unlock()

	res, err := e.svc.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 0 {
		t.Errorf("containers torn down during the pass counted as %d failures", res.Failed)
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("failed", "container")); got != 0 {
		t.Errorf("failed counter = %v for torn-down containers, want 0", got)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a teardown race was logged as an error:\n%s", logs)
	}
	for _, id := range []string{"applied", "fresh"} {
		if !strings.Contains(logs.String(), "container vanished during reconcile\" container="+id) {
			t.Errorf("%s: not logged as vanished:\n%s", id, logs)
		}
	}

	// Running, and its cgroup is not where the path says: a real failure.
	dir("lost")
	if res, _ := e.svc.Reconcile(context.Background()); res.Failed != 1 {
		t.Errorf("a running container without its cgroup: %d failures, want 1", res.Failed)
	}
}

// Every way a removed cgroup shows up (a write into a directory that is gone: ENOENT;
// a file opened before the removal: ENODEV) counts as teardown once the runtime
// says the container no longer runs or the pod is no longer ready, and only then.
func TestTornDownOnlyWhenTheRuntimeAgrees(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	e.fake.AddContainer("c1", "p1", "app")
	removed := filepath.Join(t.TempDir(), "removed")
	writeErr := cgroup.Apply(removed, e.host.io.Writes([]cgroup.IOLimit{{Device: cgroup.Device{Major: 254}, WriteBPS: 1}}))
	if !errors.Is(writeErr, fs.ErrNotExist) {
		t.Fatalf("write into a removed cgroup: %v, want ENOENT", writeErr)
	}
	gone := []error{
		fmt.Errorf("container c1: %w", writeErr),
		fmt.Errorf("container c1: %w", &fs.PathError{Op: "write", Path: removed + "/io.max", Err: syscall.ENODEV}),
	}
	ctx := context.Background()
	for _, err := range gone {
		if got := e.svc.store.tornDown(ctx, "container", "c1", err); got != err {
			t.Errorf("running container: %v became %v", err, got)
		}
	}
	if err := fmt.Errorf("x: %w", syscall.EACCES); e.svc.store.tornDown(ctx, "container", "c1", err) != err {
		t.Errorf("EACCES was taken for teardown")
	}
	e.fake.Mu.Lock()
	e.fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_EXITED
	e.fake.Pods["p1"].State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	e.fake.Mu.Unlock()
	for _, err := range gone {
		if got := e.svc.store.tornDown(ctx, "container", "c1", err); !errors.Is(got, ErrTornDown) || !vanished(got) {
			t.Errorf("exited container: %v, want ErrTornDown", got)
		}
		if got := e.svc.store.tornDown(ctx, "pod", "p1", err); !errors.Is(got, ErrTornDown) {
			t.Errorf("pod no longer ready: %v, want ErrTornDown", got)
		}
	}
	if got := e.svc.store.tornDown(ctx, "container", "removed-already", gone[0]); !errors.Is(got, ErrTornDown) {
		t.Errorf("container the runtime no longer lists: %v, want ErrTornDown", got)
	}
}

// status lists, then reads each container back: one torn down in between gets no
// row (not an error row); a running one whose cgroup is missing still gets its error.
func TestStatusSkipsTornDown(t *testing.T) {
	e, tearing, dir := newTearingEnv(t)
	stopping, kept := dir("stopping"), dir("kept")
	e.host.mkdir(t, strings.TrimPrefix(stopping, e.host.mount))
	e.host.mkdir(t, strings.TrimPrefix(kept, e.host.mount))
	dir("lost") // running, its cgroup never made
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	tearing.mu.Lock()
	tearing.tearDown["stopping"] = stopping
	tearing.mu.Unlock()

	reports, err := e.svc.reporter.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]Report{}
	for _, r := range reports {
		rows[r.ID] = r
	}
	if r, ok := rows["stopping"]; ok {
		t.Errorf("a container torn down during status has a row: %+v", r)
	}
	if r := rows["kept"]; !r.Match || r.Error != "" {
		t.Errorf("kept = %+v, want a matching row", r)
	}
	if r := rows["lost"]; r.Error == "" {
		t.Errorf("a running container without its cgroup: %+v, want an error row", r)
	}
}

// A container whose whole command exits before the post-start apply is the normal
// vanished case, whatever shape the runtime gives it: logged at info, not an ERROR,
// not counted as a failed throttle.
func TestExitedAtOnceIsVanished(t *testing.T) {
	for _, tt := range []struct {
		name string
		v2   bool
		// exit makes the container c1 of pod p1 (cgroup rel) one that has exited.
		exit func(t *testing.T, e *testEnv, rel string)
	}{
		{"docker: scope removed, runtime learns of the exit late", false, func(t *testing.T, e *testEnv, rel string) {
			// The scope is gone (never made here); dockerd still says running for a while.
			go func() {
				time.Sleep(100 * time.Millisecond)
				e.fake.Mu.Lock()
				e.fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_EXITED
				e.fake.Mu.Unlock()
			}()
		}},
		{"cri-o: the pod slice no longer delegates io", true, func(t *testing.T, e *testEnv, rel string) {
			// The scope is still there, empty, and io.max with it went.
			dir := e.host.mkdir(t, rel)
			os.Remove(filepath.Join(dir, "io.max"))
			os.WriteFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"), []byte("cpu memory\n"), 0o644)
			e.fake.Mu.Lock()
			e.fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_EXITED
			e.fake.Mu.Unlock()
		}},
		{"no cgroups path once exited", false, func(t *testing.T, e *testEnv, rel string) {
			e.fake.Mu.Lock()
			e.fake.Paths["c1"] = ""
			e.fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_EXITED
			e.fake.Mu.Unlock()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newExitEnv(t, tt.v2)
			logs := &lockedBuffer{}
			e.svc.useLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			e.fake.AddContainer("c1", "p1", "app")
			e.fake.Mu.Lock()
			rel := e.fake.Paths["c1"]
			e.fake.Mu.Unlock()
			tt.exit(t, e, rel)

			startAfter(t, e, "c1")
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a container that exited at once was logged as an error:\n%s", logs)
			}
			if !strings.Contains(logs.String(), "container vanished before its throttle was applied") {
				t.Errorf("not logged as vanished:\n%s", logs)
			}
			if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("failed", "container")); got != 0 {
				t.Errorf("failed counter = %v, want 0", got)
			}
		})
	}
}

// The same shapes on a container that keeps running are real failures: its cgroup
// is not where criguard looks, or io is not delegated to it.
func TestMissingCgroupOfRunningContainerIsAFailure(t *testing.T) {
	e := newExitEnv(t, true)
	logs := &lockedBuffer{}
	e.svc.useLogger(slog.New(slog.NewTextHandler(logs, nil)))
	e.fake.AddContainer("c1", "p1", "app")
	e.fake.Mu.Lock()
	rel := e.fake.Paths["c1"]
	e.fake.Mu.Unlock()
	dir := e.host.mkdir(t, rel)
	os.Remove(filepath.Join(dir, "io.max"))
	os.WriteFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"), []byte("cpu memory\n"), 0o644)
	e.fake.AddContainer("c2", "p1", "app2") // its cgroup never made

	for _, id := range []string{"c1", "c2"} {
		start := time.Now()
		startAfter(t, e, id)
		if took := time.Since(start); took > exitSettle+time.Second {
			t.Errorf("%s: the hook took %s waiting for an exit, want at most about %s", id, took, exitSettle)
		}
	}
	if got := testutil.ToFloat64(e.metrics.throttles.WithLabelValues("failed", "container")); got != 2 {
		t.Errorf("failed counter = %v, want 2:\n%s", got, logs)
	}
	if n := strings.Count(logs.String(), "throttle not applied; will retry"); n != 2 {
		t.Errorf("%d failures logged, want 2:\n%s", n, logs)
	}
}

// newExitEnv is a test env with pod p1 under a class that limits its containers.
func newExitEnv(t *testing.T, v2 bool) *testEnv {
	t.Helper()
	var v2Host *fakeHost
	if v2 {
		v2Host = newFakeHostV2(t)
	}
	e := newTestEnv(t, func(o *Options) {
		if v2Host != nil {
			o.IO = v2Host.io
		}
	})
	if v2Host != nil {
		e.host = v2Host
	}
	e.runPod(t, "p1", "batch", "burstable", nil)
	return e
}

// startAfter passes a StartContainer of id that the runtime answered through the hook.
func startAfter(t *testing.T, e *testEnv, id string) {
	t.Helper()
	if err := e.hook("StartContainer").After(context.Background(), nil,
		marshal(t, &runtimeapi.StartContainerRequest{ContainerId: id}), marshal(t, &runtimeapi.StartContainerResponse{}), nil); err != nil {
		t.Fatalf("StartContainer hook: %v", err)
	}
}
