package criservice

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/internal/fakeruntime"
)

const protectPolicy = `
class "latency" {
  io {
    device = "254:0"
    protect {
      pressure_some_avg10 = 10
    }
  }
}
class "batch" {
  io {
    device    = "254:0"
    write_bps = "160MiB"
    yield {
      floor   = "10MiB"
      ceiling = "400MiB"
    }
  }
}
rule "web" {
  match {
    namespaces = ["web"]
  }
  class = "latency"
}
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "batch"
}
`

const mib = 1 << 20

// protectEnv is a v2 host in a temp dir with a protected reader (web/pod-p1) and a
// yielding writer (batch/pod-p2) on 254:0, and a protection loop over them.
type protectEnv struct {
	*testEnv
	stateDir       string
	reader, writer string // their cgroups, relative to the mount
	runner         *protect.Runner
	reg            *prometheus.Registry
	logs           *bytes.Buffer
	now            time.Time
	share          float64       // percent of each tick the reader stalls, from pressure
	stalled        time.Duration // its io.pressure "some total"
}

func newProtectEnv(t *testing.T) *protectEnv {
	t.Helper()
	stateDir := t.TempDir()
	e := newTestEnv(t, func(o *Options) { o.StateDir = stateDir })
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.policy.Store(mustPolicy(t, protectPolicy))
	p := &protectEnv{testEnv: e, stateDir: stateDir, now: time.Unix(1e9, 0)}
	p.startRunner(t)
	e.runPod(t, "p1", "web", "burstable", nil)
	e.runPod(t, "p2", "batch", "burstable", nil)
	if signalled(e.svc.ProtectBooked()) {
		t.Fatal("ProtectBooked signalled before any container is protected or yields")
	}
	var err error
	if p.reader, err = e.startContainer(t, "c1", "p1", "reader"); err != nil {
		t.Fatal(err)
	}
	if !signalled(e.svc.ProtectBooked()) {
		t.Fatal("ProtectBooked not signalled for the protected container: the sleeping loop would never see it")
	}
	if p.writer, err = e.startContainer(t, "c2", "p2", "writer"); err != nil {
		t.Fatal(err)
	}
	return p
}

// startRunner makes a protection loop over the service, from the saved state.
func (p *protectEnv) startRunner(t *testing.T) {
	t.Helper()
	path := filepath.Join(p.stateDir, protect.StateFile)
	saved, err := protect.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	p.reg, p.logs = prometheus.NewRegistry(), &bytes.Buffer{}
	p.runner, err = protect.NewRunner(protect.RunnerOptions{Source: p.svc, Enforcer: p.svc, Pressure: p.svc.ProtectPressure,
		StatePath: path, Restored: saved, Logger: slog.New(slog.NewTextHandler(p.logs, nil)), Metrics: protect.NewMetrics(p.reg)})
	if err != nil {
		t.Fatal(err)
	}
	p.svc.EnableProtection(p.runner)
}

// pressure makes the reader stall share percent of each following tick.
func (p *protectEnv) pressure(share float64) {
	p.share = share
	p.writeStall()
}

// writeStall writes the reader's io.pressure, unless its cgroup is gone.
func (p *protectEnv) writeStall() {
	content := fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		p.share, p.stalled.Microseconds())
	_ = os.WriteFile(filepath.Join(p.host.mount, p.reader, "io.pressure"), []byte(content), 0o644)
}

func (p *protectEnv) tick() {
	p.now = p.now.Add(time.Second)
	p.stalled += time.Duration(p.share / 100 * float64(time.Second))
	p.writeStall()
	p.runner.Tick(context.Background(), p.now)
}

// writerWBPS is the writer's io.max wbps on 254:0 (0: max).
func (p *protectEnv) writerWBPS(t *testing.T) uint64 {
	t.Helper()
	limits, err := p.host.io.Limits(filepath.Join(p.host.mount, p.writer))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range limits {
		if l.Device == (cgroup.Device{Major: 254}) {
			return l.WriteBPS
		}
	}
	return 0
}

// Under pressure the writer is tightened step by step to its floor and no lower,
// each change logged once and counted; a reconcile pass in between keeps the limit
// in force; when the reader goes quiet the writer gets its cap back, step by step,
// after the hold-down, and never more than its cap.
func TestProtectionTightensToTheFloorAndGivesBack(t *testing.T) {
	p := newProtectEnv(t)
	if got := p.writerWBPS(t); got != 160*mib {
		t.Fatalf("at start wbps = %d, want the class's cap 160MiB", got)
	}
	if !signalled(p.svc.ProtectBooked()) {
		t.Fatal("ProtectBooked not signalled for the yielding writer")
	}
	p.reconcile(t)
	if signalled(p.svc.ProtectBooked()) {
		t.Fatal("ProtectBooked signalled again for containers already booked")
	}
	p.pressure(50)
	seen := []uint64{160 * mib}
	for range 40 {
		p.tick()
		got := p.writerWBPS(t)
		if got < 10*mib || got > 160*mib {
			t.Fatalf("wbps %d outside [floor 10MiB, cap 160MiB]", got)
		}
		if len(seen) == 0 || seen[len(seen)-1] != got {
			seen = append(seen, got)
		}
		p.reconcile(t) // the reconciler writes the limit in force, not the cap
		if again := p.writerWBPS(t); again != got {
			t.Fatalf("a reconcile pass wrote %d over the limit in force %d", again, got)
		}
	}
	if limits, _ := p.host.io.Limits(filepath.Join(p.host.mount, p.writer)); len(limits) != 1 || limits[0].ReadBPS != 10*mib {
		t.Errorf("io.max under pressure = %+v, want the uncapped read_bps held at its floor too", limits)
	}
	want := []uint64{160 * mib, 80 * mib, 40 * mib, 20 * mib, 10 * mib}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("wbps went %v, want halvings to the floor %v", seen, want)
	}
	// write_bps: 4 halvings; read_bps, uncapped, from the 400MiB ceiling: 6 to its floor.
	if n := seriesSum(t, p.reg, "criguard_protect_limit_changes_total", "tighten"); n != 10 {
		t.Errorf("tighten counted %v times, want 10", n)
	}
	if n := strings.Count(p.logs.String(), "key=write_bps from="); n != 4 {
		t.Errorf("%d write_bps log lines, want one per change (4):\n%s", n, p.logs)
	}
	if !strings.Contains(p.logs.String(), "protecting=web/pod-p1") {
		t.Errorf("the log does not say whom the writer yields to:\n%s", p.logs)
	}
	if got := p.runner.Protecting(cgroup.Device{Major: 254}); fmt.Sprint(got) != "[web/pod-p1]" {
		t.Errorf("Protecting = %v", got)
	}
	// The reader goes quiet: nothing for the hold-down (counted once the quiet ticks
	// fill the pressure's window of 3), then a tenth of the range (ceiling 160 - floor
	// 10) per tick up to the cap.
	p.pressure(0)
	for i := range protect.DefaultConfig.HoldDown - 1 + 2 {
		p.tick()
		if got := p.writerWBPS(t); got != 10*mib {
			t.Fatalf("gave back %d at quiet tick %d, before the hold-down", got, i+1)
		}
	}
	var back []uint64
	for range 20 {
		p.tick()
		back = append(back, p.writerWBPS(t))
	}
	if back[0] != 25*mib || back[len(back)-1] != 160*mib {
		t.Errorf("give-back went %v, want 25MiB first and the cap at the end", back)
	}
	for i := 1; i < len(back); i++ {
		if back[i] < back[i-1] || back[i]-back[i-1] > 15*mib {
			t.Errorf("give-back not step by step: %v", back)
			break
		}
	}
	if got := p.runner.Protecting(cgroup.Device{Major: 254}); len(got) != 0 {
		t.Errorf("still protecting %v with the writer at its cap", got)
	}
	// read_bps, uncapped by the class, yielded from the 400MiB ceiling: given all its
	// bandwidth back it has no limit again.
	limits, err := p.host.io.Limits(filepath.Join(p.host.mount, p.writer))
	if err != nil || len(limits) != 1 || limits[0].ReadBPS != 0 || limits[0].WriteBPS != 160*mib {
		t.Errorf("io.max after the give-back = %+v (%v), want rbps=max and the class's wbps", limits, err)
	}
}

// A reader whose pressure depends on what the writer may use, under a steady load:
// the writer settles below the point the reader feels and stays there, tightened a
// few times and probed for bandwidth ever more rarely, never flapping tick by tick.
func TestProtectionDoesNotOscillateUnderSteadyLoad(t *testing.T) {
	p := newProtectEnv(t)
	var moves, reversals int
	last, dir := p.writerWBPS(t), 0
	for range 600 {
		// The disk leaves the reader alone while the writer may use 30 MiB/s or less;
		// busy, it still stalls a little.
		p.pressure(max(0.1, (float64(p.writerWBPS(t))/mib-30)*0.5))
		p.tick()
		got := p.writerWBPS(t)
		if got == last {
			continue
		}
		moves++
		d := 1
		if got < last {
			d = -1
		}
		if dir != 0 && d != dir {
			reversals++
		}
		last, dir = got, d
	}
	if got := p.writerWBPS(t); got > 45*mib {
		t.Errorf("after 10 minutes the writer may use %d MiB/s: the reader is not protected", got/mib)
	}
	if moves > 20 || reversals > 12 {
		t.Errorf("%d changes and %d reversals in 600 ticks of steady load: flapping", moves, reversals)
	}
}

// The protected pod goes away: its neighbours get their bandwidth back.
func TestProtectionRecoversWhenTheProtectedPodGoes(t *testing.T) {
	p := newProtectEnv(t)
	p.pressure(80)
	for range 20 {
		p.tick()
	}
	if got := p.writerWBPS(t); got != 10*mib {
		t.Fatalf("wbps %d, want the floor", got)
	}
	if err := os.RemoveAll(filepath.Join(p.host.mount, p.reader)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.fake.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	p.reconcile(t)
	for range protect.DefaultConfig.HoldDown + 10 {
		p.tick()
	}
	if got := p.writerWBPS(t); got != 160*mib {
		t.Errorf("wbps %d after the protected pod left, want the cap back", got)
	}
}

// A restart of criguard neither lifts a tightened limit (the first reconcile pass
// writes the saved limit in force, not the cap) nor erases what another tool wrote
// on the same line; the loop goes on from where it was.
func TestProtectionAcrossARestart(t *testing.T) {
	p := newProtectEnv(t)
	p.pressure(80)
	for range 4 { // 160 → 80 → 40
		p.tick()
	}
	if got := p.writerWBPS(t); got != 40*mib {
		t.Fatalf("wbps %d before the restart, want 40MiB", got)
	}
	// Another tool caps the writer's read IOPS on the same device.
	dir := filepath.Join(p.host.mount, p.writer)
	if err := os.WriteFile(filepath.Join(dir, "io.max"), []byte("254:0 rbps=max wbps=41943040 riops=500 wiops=max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.runner.Tick(context.Background(), p.now) // a last save, as Run does when stopped
	// A new process: the same state dir, a new service and loop.
	restarted := &testEnv{fake: p.fake, host: p.host, metrics: NewMetrics(prometheus.NewRegistry())}
	restarted.policy.Store(p.policy.Load())
	rt, _ := fakeruntime.Serve(t, p.fake)
	svc, err := New(Options{Runtime: rt, IO: p.host.io, Resolver: criResolver(t, rt), Devices: fakeDevices{},
		Policy: restarted.policy.Load, Metrics: restarted.metrics, StateDir: p.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	restarted.svc = svc
	q := &protectEnv{testEnv: restarted, stateDir: p.stateDir, reader: p.reader, writer: p.writer, now: p.now}
	q.startRunner(t)
	q.reconcile(t)
	limits, err := q.host.io.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 1 || limits[0].WriteBPS != 40*mib || limits[0].ReadIOPS != 500 {
		t.Fatalf("after the restart's first pass io.max = %+v, want wbps 40MiB (not lifted) and the foreign riops=500 kept", limits)
	}
	q.pressure(80)
	q.tick()
	q.tick()
	q.tick()
	if got := q.writerWBPS(t); got != 20*mib {
		t.Errorf("wbps %d after the restart under pressure, want the next halving (20MiB)", got)
	}
	limits, _ = q.host.io.Limits(dir)
	if limits[0].ReadIOPS != 500 {
		t.Errorf("the loop erased the foreign riops: %+v", limits)
	}
}

// A plan made before a loop's tick and written after it (a reconcile pass that
// raced the loop) writes the tick's limit, not the one it planned with: writes to a
// cgroup are serialized, and the limits in force are laid again under the lock.
func TestStalePlanWritesTheLatestLimitInForce(t *testing.T) {
	p := newProtectEnv(t)
	stale, err := p.plan("c2", planOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.pressure(50)
	p.tick()
	if got := p.writerWBPS(t); got != 80*mib {
		t.Fatalf("wbps %d after a tightening, want 80MiB", got)
	}
	if _, _, err := p.svc.applyPlan(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	if got := p.writerWBPS(t); got != 80*mib {
		t.Errorf("a plan made before the tick wrote %d MiB/s over the loop's 80", got/mib)
	}
	// Under load: reconcile passes racing ticks end with the loop's limit in place.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if _, err := p.svc.Reconcile(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 20 {
		p.tick()
	}
	<-done
	if got, want := p.writerWBPS(t), p.runner.InForce(protect.YieldLine{Container: "c2", Device: cgroup.Device{Major: 254},
		Kind: protect.WriteBPS, Floor: 10 * mib, Ceiling: 160 * mib, Capped: true}); got != want {
		t.Errorf("after racing passes wbps = %d, the loop holds %d", got, want)
	}
}

// explain, status and top, in a process of their own (a service on the daemon's
// state dir, the loop not running), show the limit in force beside the class's and
// say why they differ: the writer yields, protecting web/pod-p1.
func TestVisibilityOfTheLimitInForce(t *testing.T) {
	p := newProtectEnv(t)
	p.pressure(80)
	for range 4 { // 160 → 80 → 40
		p.tick()
	}
	ctx := context.Background()
	rt, _ := fakeruntime.Serve(t, p.fake)
	cli, err := New(Options{Runtime: rt, IO: p.host.io, Resolver: criResolver(t, rt), Devices: fakeDevices{},
		Policy: p.policy.Load, StateDir: p.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := protect.LoadState(filepath.Join(p.stateDir, protect.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.EnableProtectionState(saved); err != nil {
		t.Fatal(err)
	}
	ex, err := cli.Reporter().Explain(ctx, "c2")
	if err != nil {
		t.Fatal(err)
	}
	want := "write_bps on 254:0: 40MiB/s in force, the class gives 160MiB/s: yielding, protecting web/pod-p1 (the loop holds 40MiB/s)"
	if !slices.Contains(ex.InForceNotes, want) {
		t.Errorf("explain notes = %q\nwant %q", ex.InForceNotes, want)
	}
	if len(ex.Pending) != 0 {
		t.Errorf("explain would write %v over the limit the loop holds", ex.Pending)
	}
	reports, err := cli.Reporter().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, r := range reports {
		if r.ID != "c2" {
			continue
		}
		found++
		if !r.Match || len(r.Class) != 1 || r.Class[0].WriteBPS != 160*mib || len(r.InForceNotes) == 0 {
			t.Errorf("status row of the writer = %+v, want in sync, the class's 160MiB beside and why", r)
		}
	}
	if err := cli.Reporter().TrackRunning(ctx); err != nil {
		t.Fatal(err)
	}
	first := cli.Reporter().SampleUsage()
	time.Sleep(10 * time.Millisecond)
	for _, r := range Rates(first, cli.Reporter().SampleUsage()) {
		if r.ID != "c2" {
			continue
		}
		found++
		if r.Limit.WriteBPS != 40*mib || r.ClassLimit == nil || r.ClassLimit.WriteBPS != 160*mib {
			t.Errorf("top row of the writer: limit %+v, class %+v; want 40MiB in force beside the class's 160MiB", r.Limit, r.ClassLimit)
		}
	}
	if found != 2 {
		t.Errorf("the writer has %d rows in status and top, want one in each", found)
	}
}
