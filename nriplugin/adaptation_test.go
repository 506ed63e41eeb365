package nriplugin

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"

	"github.com/criguard/criguard/criservice"
)

// These tests run the plugin against NRI's own runtime side (pkg/adaptation, the
// code containerd and CRI-O embed), over a real socket: the protocol, the runtime's
// deadline and the reconnection, without a runtime.

// slowEngine is fakeEngine whose Starting takes delay while slow is set.
type slowEngine struct {
	fakeEngine
	delay time.Duration
	slow  atomic.Bool
}

func (s *slowEngine) Starting(ctx context.Context, id string) *criservice.Start {
	if s.slow.Load() {
		time.Sleep(s.delay)
	}
	return s.fakeEngine.Starting(ctx, id)
}

// runtimeSide starts NRI's runtime side on a socket of its own, listing the given
// containers at each registration, and the plugin against it.
func runtimeSide(t *testing.T, e Engine, listed []*api.Container) (*adaptation.Adaptation, *Plugin, *atomic.Int32) {
	t.Helper()
	dir := t.TempDir()
	syncs := &atomic.Int32{}
	r, err := adaptation.New("test-runtime", "v0", func(ctx context.Context, cb adaptation.SyncCB) error {
		_, err := cb(ctx, []*api.PodSandbox{nriPod()}, listed)
		syncs.Add(1) // the runtime adds the plugin to its list right after this
		return err
	}, func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil },
		adaptation.WithSocketPath(filepath.Join(dir, "nri.sock")), adaptation.WithPluginPath(filepath.Join(dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	p, err := New(Options{Engine: e, Socket: filepath.Join(dir, "nri.sock"), Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "registration", func() bool { return p.Ready() == nil && syncs.Load() > 0 })
	return r, p, syncs
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgainstNRIRuntimeSide(t *testing.T) {
	e := &fakeEngine{}
	r, _, _ := runtimeSide(t, e, []*api.Container{nriContainer("listed", 2048)})
	waitFor(t, "the listing in the engine", func() bool {
		observed := e.observedIDs()
		return len(observed) == 1 && observed[0] == "listed"
	})
	ctx := context.Background()
	var resp *api.CreateContainerResponse
	waitFor(t, "the plugin in the runtime's list", func() bool {
		var err error
		resp, err = r.CreateContainer(ctx, &api.CreateContainerRequest{Pod: nriPod(), Container: nriContainer("c1", 1024)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetAdjust().GetLinux().GetResources().GetCpu().GetShares() != nil
	})
	res := resp.GetAdjust().GetLinux().GetResources()
	if res.GetCpu().GetShares().GetValue() != 126 || res.GetUnified()["io.max"] != "254:0 wbps=1048576" {
		t.Errorf("the runtime got adjustment %v", resp.GetAdjust())
	}
	if err := r.StartContainer(ctx, &api.StartContainerRequest{Pod: nriPod(), Container: nriContainer("c1", 126)}); err != nil {
		t.Fatal(err)
	}
	if !e.saw("starting c1") {
		t.Errorf("events %v: no Starting at the runtime's StartContainer", e.eventList())
	}
	upd, err := r.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: nriPod(), Container: nriContainer("c1", 126),
		LinuxResources: &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(4096)}}})
	if err != nil {
		t.Fatal(err)
	}
	// The runtime applies the plugin's update for the container being updated.
	var shares uint64
	for _, u := range upd.GetUpdate() {
		if u.GetContainerId() == "c1" {
			shares = u.GetLinux().GetResources().GetCpu().GetShares().GetValue()
		}
	}
	if shares != 126 {
		t.Errorf("kubelet's looser update reached the runtime as %v", upd)
	}
}

// A plugin slower than the runtime's deadline is dropped and the start goes on
// (fail open); the plugin registers again by itself and is handed the listing.
func TestSlowPluginIsDroppedAndComesBack(t *testing.T) {
	adaptation.SetPluginRequestTimeout(200 * time.Millisecond)
	t.Cleanup(func() { adaptation.SetPluginRequestTimeout(adaptation.DefaultPluginRequestTimeout) })
	e := &slowEngine{delay: time.Second}
	r, p, syncs := runtimeSide(t, e, nil)
	waitFor(t, "the plugin in the runtime's list", func() bool {
		if err := r.StartContainer(context.Background(), &api.StartContainerRequest{Pod: nriPod(), Container: nriContainer("c0", 2)}); err != nil {
			t.Fatal(err)
		}
		return e.saw("starting c0")
	})
	e.slow.Store(true)
	began := time.Now()
	err := r.StartContainer(context.Background(), &api.StartContainerRequest{Pod: nriPod(), Container: nriContainer("c1", 2)})
	took := time.Since(began)
	if err != nil {
		t.Fatalf("the runtime's start failed with the plugin slow: %v", err)
	}
	if took < 150*time.Millisecond || took > 900*time.Millisecond {
		t.Errorf("the start waited %s for a plugin with a 200ms deadline", took)
	}
	t.Logf("start with a slow plugin: %s (deadline 200ms)", took.Round(time.Millisecond))
	e.slow.Store(false)
	waitFor(t, "a second registration", func() bool { return syncs.Load() >= 2 && p.Ready() == nil })
	waitFor(t, "the plugin back in the runtime's list", func() bool {
		if err := r.StartContainer(context.Background(), &api.StartContainerRequest{Pod: nriPod(), Container: nriContainer("c2", 2)}); err != nil {
			t.Fatal(err)
		}
		return e.saw("starting c2")
	})
}
