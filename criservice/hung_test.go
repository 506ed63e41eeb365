package criservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/internal/fakeruntime"
	"github.com/criguard/criguard/policy"
)

// A runtime that never answers Version or List: every kubelet call through the
// hooks still returns within --apply-timeout, concurrent callers do not queue
// behind one another, and nothing is left running afterwards.
func TestHungRuntimeNeverHoldsAKubeletCall(t *testing.T) {
	rt, _ := fakeruntime.ServeRuntime(t, fakeruntime.Hung{})
	const applyTimeout = 200 * time.Millisecond
	resolver, err := resolve.New(resolve.Config{Mode: "auto", Runtime: rt, Timeout: applyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	host := newFakeHost(t)
	p := mustPolicy(t, basePolicy)
	svc, err := New(Options{Runtime: rt, IO: host.io, Resolver: resolver, Devices: fakeDevices{},
		Policy: func() *policy.Policy { return p }, ApplyTimeout: applyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	hooks := CRIHooks(svc)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			req := marshal(t, &runtimeapi.StartContainerRequest{ContainerId: fmt.Sprint("c", i)})
			if _, _, err := hooks[runtimeService+"StartContainer"].Before(context.Background(), req); err != nil {
				t.Errorf("Before StartContainer: %v", err)
			}
			if err := hooks[runtimeService+"StartContainer"].After(context.Background(), nil, req, nil, nil); err != nil {
				t.Errorf("After StartContainer: %v", err)
			}
		})
	}
	wg.Wait()
	// Before and After each get --apply-timeout; a lock held across the hung call
	// would queue the eight callers one after another.
	if took := time.Since(start); took > 4*applyTimeout+time.Second {
		t.Errorf("eight StartContainers against a hung runtime took %v, want about %v", took, 2*applyTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := svc.Reconcile(ctx); err == nil {
		t.Error("reconcile against a hung runtime reported success")
	}
	if ctx.Err() != nil {
		t.Error("reconcile waited for the caller's deadline instead of its own")
	}
	svc.Close()
	// Nothing of criguard's may still be running: a goroutine stuck on the hung
	// runtime would pile up with every call.
	var stacks string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if leftOver(stacks) == "" {
			return
		}
	}
	t.Errorf("goroutines left over:\n%s", leftOver(stacks))
}

// leftOver returns the goroutines running criservice code, but for the test's own.
func leftOver(stacks string) string {
	var out []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "criguard/criservice.") && !strings.Contains(g, "TestHungRuntime") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// stuckResolver never answers for one container, as a stuck shim or a docker
// inspect of a container stuck in stop does.
type stuckResolver struct {
	Resolver
	stuck string
}

func (r stuckResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	if id == r.stuck {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return r.Resolver.CgroupsPath(ctx, id)
}

// One container whose cgroup lookup never returns costs the reconcile pass one
// --apply-timeout: the pass goes on and repairs the others.
func TestReconcileSkipsAStuckContainer(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.ApplyTimeout = 200 * time.Millisecond })
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.AddContainer("c0", "p1", "stuck")
	restarted := newTestEnvSharing(t, e)
	restarted.svc.store.resolver = stuckResolver{Resolver: restarted.svc.store.resolver, stuck: "c0"}
	os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.write_bps_device"), []byte("254:0 0"), 0o644)
	done := make(chan ReconcileResult, 1)
	go func() {
		res, _ := restarted.svc.Reconcile(context.Background())
		done <- res
	}()
	select {
	case res := <-done:
		if res.Containers != 2 || res.Fixed != 1 || res.Failed != 1 {
			t.Errorf("reconcile = %+v, want 2 containers, 1 fixed, 1 failed (the stuck one, retried next pass)", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stuck cgroup lookup held the reconcile pass")
	}
	if got := e.host.file(t, rel, "blkio.throttle.write_bps_device"); got != "254:0 1048576" {
		t.Errorf("the other container's write_bps = %q, want repaired to 254:0 1048576", got)
	}
}
