package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
)

// engineHost is what the proxy (serve) and the NRI plugin (nri) both keep around
// the engine: the state dir's lock, the metrics, the policy and the reconciler's
// trigger.
type engineHost struct {
	cfg          serveConfig
	log          *slog.Logger
	lock         *modeLock
	reg          *prometheus.Registry
	metrics      *criservice.Metrics
	reconcileNow chan struct{}
	watcher      *policy.Watcher
	unloaded     *policyHealth
}

// startEngineHost takes the state dir's lock for mode and loads the policy; changed
// runs after each reload that changed it. release gives the lock back.
func startEngineHost(cfg serveConfig, mode string, log *slog.Logger, changed func()) (*engineHost, error) {
	setDaemonGCPercent()
	lock, err := lockMode(cfg.stateDir, mode)
	if err != nil {
		return nil, err
	}
	h := &engineHost{cfg: cfg, log: log, lock: lock, reg: prometheus.NewRegistry(), reconcileNow: make(chan struct{}, 1)}
	h.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.metrics = criservice.NewMetrics(h.reg)
	if h.watcher, h.unloaded, err = startPolicy(cfg, h.metrics, log, changed); err != nil {
		lock.release()
		return nil, err
	}
	return h, nil
}

func (h *engineHost) release() { h.lock.release() }

// daemonGCPercent is the collector's target while serve or nri runs. A daemon's live
// heap is small (3 MB at 110 pods) and nearly all it allocates is forwarded calls'
// garbage, which Go's default of 100 let pile up to about three times the live heap
// between collections. 75 gave back about 2 MiB of RSS at 110 pods for 2–3 % more
// idle CPU; 50 gave back a little more for 9 % more CPU a forwarded call under load
// (docs/BENCHMARKS.md §18).
const daemonGCPercent = 75

// setDaemonGCPercent applies daemonGCPercent unless GOGC is set: the operator's wins.
func setDaemonGCPercent() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(daemonGCPercent)
	}
}

// kick asks for a reconcile pass; one asked during a pass folds into the next.
func (h *engineHost) kick() {
	select {
	case h.reconcileNow <- struct{}{}:
	default:
	}
}

// runEngine starts in wg what runs beside either front end: the policy watcher, its
// SIGHUP reload, the burst and protection loops and the reconciler. An error leaves
// ctx's cancel and wg's wait to the caller.
func (h *engineHost) runEngine(ctx context.Context, wg *sync.WaitGroup, svc *criservice.Service) error {
	if h.cfg.metricsWorkloads {
		h.reg.MustRegister(svc.Reporter().WorkloadCollector())
	}
	wg.Go(func() {
		if err := h.watcher.Run(ctx); err != nil {
			h.log.Error("policy watcher stopped; reload with SIGHUP only", "err", err)
		}
	})
	wg.Go(func() { reloadOnSIGHUP(ctx, h.watcher) })
	if err := startLoops(ctx, wg, h.cfg, svc, h.reg, h.log); err != nil {
		return err
	}
	wg.Go(func() {
		(&criservice.Reconciler{Passes: svc, Interval: h.cfg.reconcileInterval, Changed: svc.LimitsChanged(), Log: h.log}).Run(ctx, h.reconcileNow)
	})
	return nil
}
