package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/criservice/protect"
)

// startLoops runs the loops that move limits in force beside the reconciler: the
// burst loop and the protection loop.
func startLoops(ctx context.Context, wg *sync.WaitGroup, cfg serveConfig, svc *criservice.Service, reg prometheus.Registerer, log *slog.Logger) error {
	if err := startBurst(ctx, wg, cfg, svc, reg, log); err != nil {
		return err
	}
	return startProtect(ctx, wg, cfg, svc, reg, log)
}

// startProtect runs the protection loop: the limits in force are restored from the
// state dir (an unreadable file: every yielder starts at its class's cap, never
// looser), and container plans take them from then on. cgroup v1 has no io.pressure:
// there the loop does not run, and yielding classes keep their caps.
func startProtect(ctx context.Context, wg *sync.WaitGroup, cfg serveConfig, svc *criservice.Service, reg prometheus.Registerer, log *slog.Logger) error {
	if cfg.protectInterval <= 0 {
		log.Info("protection loop off (--protect-interval 0): yielding classes keep their caps")
		return nil
	}
	if !svc.HasPressure() {
		log.Info("protection loop off: cgroup v1 has no io.pressure; yielding classes keep their caps")
		return nil
	}
	statePath := ""
	var saved protect.State
	if cfg.stateDir != "" {
		statePath = filepath.Join(cfg.stateDir, protect.StateFile)
		var err error
		if saved, err = protect.LoadState(statePath); err != nil {
			log.Error("protection state unreadable; every yielder starts at its class's cap", "path", statePath, "err", err)
			saved = protect.State{}
		}
	}
	runner, err := protect.NewRunner(protect.RunnerOptions{
		Source:    svc,
		Enforcer:  svc,
		Pressure:  svc.ProtectPressure,
		StatePath: statePath,
		Restored:  saved,
		Interval:  cfg.protectInterval,
		Logger:    log,
		Metrics:   protect.NewMetrics(reg),
		Wake:      svc.ProtectBooked(),
	})
	if err != nil {
		return err
	}
	svc.EnableProtection(runner)
	wg.Go(func() { runner.Run(ctx) })
	return nil
}

// protectionFromState lays the daemon's protection limits in force (its saved
// state) over the plans of explain, status and top, which run in their own process:
// a yielding container held down reads as in sync, not as pending. It returns notes.
func protectionFromState(cfg serveConfig, svc *criservice.Service) []string {
	if cfg.stateDir == "" || !svc.HasPressure() {
		return nil
	}
	path := filepath.Join(cfg.stateDir, protect.StateFile)
	saved, err := protect.LoadState(path)
	if err == nil {
		err = svc.EnableProtectionState(saved)
	}
	if err != nil {
		return []string{fmt.Sprintf("protection state unreadable (%v): yielding limits are compared with their caps", err)}
	}
	return nil
}
