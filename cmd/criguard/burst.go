package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/criservice/burst"
)

// startBurst runs the burst loop beside the reconciler: the credit left is restored
// from the state dir (an unreadable file: every bucket starts empty, never full),
// and container plans take the limits in force from then on.
func startBurst(ctx context.Context, wg *sync.WaitGroup, cfg serveConfig, svc *criservice.Service, reg prometheus.Registerer, log *slog.Logger) error {
	if cfg.burstInterval <= 0 {
		log.Info("burst loop off (--burst-interval 0): bursting keys stay at their sustained rate")
		return nil
	}
	statePath := ""
	var saved []burst.Saved
	if cfg.stateDir != "" {
		statePath = filepath.Join(cfg.stateDir, burst.StateFile)
		var err error
		if saved, err = burst.LoadState(statePath); err != nil {
			log.Error("burst credit left unreadable; every bucket of a running container starts empty", "path", statePath, "err", err)
			saved = nil
		}
	}
	ctl := burst.NewController(saved)
	svc.EnableBurst(ctl)
	runner, err := burst.NewRunner(burst.RunnerOptions{
		Controller: ctl,
		Source:     svc,
		Enforcer:   svc,
		Stats:      svc.BurstStats,
		StatePath:  statePath,
		Interval:   cfg.burstInterval,
		Logger:     log,
		Metrics:    burst.NewMetrics(reg),
		Wake:       svc.BurstBooked(),
	})
	if err != nil {
		return err
	}
	wg.Go(func() { runner.Run(ctx) })
	return nil
}
