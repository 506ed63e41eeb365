package criservice

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/criservice/protect"
)

// The burst and protection loops tick once a second (their DefaultInterval), so one
// tick's time × 60 is their CPU per minute. Both run on a v2 host in a temp dir with
// 110 running containers (kubelet's default pod limit), in the steady state: counters
// and pressure still, so a tick samples and writes nothing.
//
//	go test -run '^$' -bench 'Tick110' -benchtime 2000x ./criservice/

// BenchmarkBurstTick110: every one of the 110 containers has burst credit, so every
// tick reads 110 io.stat files.
func BenchmarkBurstTick110(b *testing.B) {
	e := newTestEnv(b, nil)
	e.host = newFakeHostV2(b)
	e.svc.useIO(e.host.io)
	e.policy.Store(mustPolicy(b, burstPolicy))
	ctl := burst.NewController(nil)
	e.svc.EnableBurst(ctl)
	reg := prometheus.NewRegistry()
	r, err := burst.NewRunner(burst.RunnerOptions{Controller: ctl, Source: e.svc, Enforcer: e.svc, Stats: e.svc.BurstStats,
		Metrics: burst.NewMetrics(reg)})
	if err != nil {
		b.Fatal(err)
	}
	for p := range 11 {
		podID := fmt.Sprintf("p%02d", p)
		e.runPod(b, podID, "batch", "burstable", nil)
		for c := range 10 {
			rel, err := e.startContainer(b, fmt.Sprintf("%s-c%d", podID, c), podID, "worker")
			if err != nil {
				b.Fatal(err)
			}
			e.write(b, rel, "io.stat", "254:0 rbytes=0 wbytes=4096 rios=0 wios=1 dbytes=0 dios=0\n")
		}
	}
	if n := len(e.svc.BurstTargets()); n != 110 {
		b.Fatalf("%d burst targets, want 110", n)
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now) // the first tick raises every container to its burst rate
	if raised := seriesSum(b, reg, "criguard_burst_limit_changes_total", ""); raised != 110 {
		b.Fatalf("the first tick made %v changes, want 110 raised to the burst rate", raised)
	}
	benchSteadyTicks(b, r.Tick, now, reg, "criguard_burst_limit_changes_total")
}

// benchSteadyTicks times tick once a second of fake time after start, and fails if a
// timed tick changed a limit (the counter changes of reg).
func benchSteadyTicks(b *testing.B, tick func(context.Context, time.Time), start time.Time, reg *prometheus.Registry, changes string) {
	b.Helper()
	ctx, now := context.Background(), start
	before := seriesSum(b, reg, changes, "")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(time.Second)
		tick(ctx, now)
	}
	b.StopTimer()
	if got := seriesSum(b, reg, changes, ""); got != before {
		b.Fatalf("%v limit changes in the steady state, want none", got-before)
	}
}

// BenchmarkProtectTick110: 10 protected readers (one pod each) and 100 yielding
// writers (10 pods of 10) on one disk; every tick reads the readers' io.pressure.
func BenchmarkProtectTick110(b *testing.B) {
	e := newTestEnv(b, func(o *Options) { o.StateDir = b.TempDir() })
	e.host = newFakeHostV2(b)
	e.svc.useIO(e.host.io)
	e.policy.Store(mustPolicy(b, protectPolicy))
	reg := prometheus.NewRegistry()
	r, err := protect.NewRunner(protect.RunnerOptions{Source: e.svc, Enforcer: e.svc, Pressure: e.svc.ProtectPressure,
		Metrics: protect.NewMetrics(reg)})
	if err != nil {
		b.Fatal(err)
	}
	e.svc.EnableProtection(r)
	for p := range 10 {
		podID := fmt.Sprintf("web%02d", p)
		e.runPod(b, podID, "web", "burstable", nil)
		rel, err := e.startContainer(b, podID+"-c", podID, "reader")
		if err != nil {
			b.Fatal(err)
		}
		e.write(b, rel, "io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	}
	for p := range 10 {
		podID := fmt.Sprintf("batch%02d", p)
		e.runPod(b, podID, "batch", "burstable", nil)
		for c := range 10 {
			if _, err := e.startContainer(b, fmt.Sprintf("%s-c%d", podID, c), podID, "writer"); err != nil {
				b.Fatal(err)
			}
		}
	}
	protected, _ := e.svc.ProtectTargets()
	if len(protected) != 10 {
		b.Fatalf("%d protected targets, want 10", len(protected))
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	if got := seriesSum(b, reg, "criguard_protect_limit_changes_total", ""); got != 0 {
		b.Fatalf("the first tick made %v changes without pressure, want none", got)
	}
	benchSteadyTicks(b, r.Tick, now, reg, "criguard_protect_limit_changes_total")
}
