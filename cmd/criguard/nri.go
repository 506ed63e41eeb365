package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/nriplugin"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/proxy"
)

type nriConfig struct {
	serveConfig
	socket      string
	pluginName  string
	pluginIndex string
	retry       time.Duration
}

func runNRI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := nriConfig{}
	fs := newFlagSet("nri", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: criguard nri [flags]\n\nRun as an NRI plugin of containerd 2.x or CRI-O instead of a CRI proxy: kubelet talks to the runtime\ndirectly, and the runtime hands criguard every pod and container event. --runtime-endpoint is the\nruntime's own CRI socket, which criguard only reads (lookups, reconcile) and updates through.")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.socket, "nri-socket", nriplugin.DefaultSocket, "the runtime's NRI socket")
	fs.StringVar(&cfg.pluginName, "nri-plugin-name", "criguard", "the name the plugin registers with")
	fs.StringVar(&cfg.pluginIndex, "nri-plugin-index", "10", "the plugin's index: the runtime calls plugins in index order")
	fs.DurationVar(&cfg.retry, "nri-retry", time.Second, "pause between two attempts to reach the runtime's NRI socket")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	addRuntimeFlags(fs, &cfg.serveConfig)
	fs.BoolVar(&cfg.failClosed, "fail-closed", false, "refused here: the proxy's alone (see criguard nri -h)")
	fs.BoolVar(&cfg.dryRun, "dry-run", false, "log the cgroup writes criguard would make, and make none")
	addReconcileFlags(fs, &cfg.serveConfig)
	// The loops as serve's: without these flags they were off (zero intervals).
	fs.DurationVar(&cfg.burstInterval, "burst-interval", burst.DefaultInterval, "how often the burst loop samples I/O counters and moves limits in force (0: off)")
	fs.DurationVar(&cfg.protectInterval, "protect-interval", protect.DefaultInterval, "how often the protection loop reads protected pods' io.pressure and moves yielding limits (0: off)")
	fs.DurationVar(&cfg.applyTimeout, "apply-timeout", time.Second, "longest time one runtime call or lookup may take; keep it under the runtime's NRI request timeout (2s)")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&cfg.metricsWorkloads, "metrics-workloads", false, "export limits, usage and I/O pressure per namespace/pod/container/device (one series set per container)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("nri takes no arguments, got %q", fs.Args())}
	}
	if cfg.failClosed {
		return &exitError{code: 2, err: errors.New("--fail-closed is the proxy's alone: a runtime skips an NRI plugin that misses its deadline and starts the container all the same, so the plugin cannot promise that a container whose throttle failed never runs")}
	}
	log, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	return serveNRI(ctx, cfg, log)
}

// serveNRI runs criguard as an NRI plugin: the same engine, policy watcher, state
// dir, reconcile loop, metrics and health as the proxy, driven by the runtime's
// NRI events instead of kubelet's CRI calls.
func serveNRI(ctx context.Context, cfg nriConfig, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var plugin *nriplugin.Plugin // set before the watcher runs
	var host *engineHost
	host, err := startEngineHost(cfg.serveConfig, "NRI plugin", log, func() {
		// Not svc.PolicyChanged: the runtime's NRI updates carry pids, memory and
		// cpu; the pass rewrites what criguard writes to files.
		if plugin != nil {
			go plugin.PolicyChanged(ctx)
		}
		host.kick()
	})
	if err != nil {
		return err
	}
	defer host.release()

	conn, err := proxy.Dial(cfg.runtimeEndpoint, proxy.DefaultMaxMsgSize)
	if err != nil {
		return fmt.Errorf("runtime endpoint: %w", err)
	}
	defer conn.Close()
	svc, err := newService(cfg.serveConfig, runtimeapi.NewRuntimeServiceClient(conn), func() *policy.Policy { return host.watcher.Current() }, host.metrics, log)
	if err != nil {
		return err
	}
	defer svc.Close()
	plugin, err = nriplugin.New(nriplugin.Options{
		Engine: svc, Socket: cfg.socket, Name: cfg.pluginName, Index: cfg.pluginIndex,
		Reconcile: host.kick, Retry: cfg.retry, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("criguard serving as an NRI plugin", "version", version, "nri_socket", cfg.socket, "plugin", cfg.pluginIndex+"-"+cfg.pluginName,
		"runtime", cfg.runtimeEndpoint, "policy", cfg.policyPath, "dry_run", cfg.dryRun)

	var wg sync.WaitGroup
	if err := host.runEngine(ctx, &wg, svc); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	wg.Go(func() { _ = plugin.Run(ctx) })
	var metricsSrv *http.Server
	if cfg.metricsAddr != "" {
		metricsSrv, err = serveMetrics(cfg.metricsAddr, host.reg, func() error { return ready(plugin, host.unloaded) }, log)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		defer metricsSrv.Close()
	}
	notifier := systemdNotifier{log: log}
	wg.Go(func() {
		notifier.readyWhen(ctx, func() (bool, string) {
			if err := plugin.Ready(); err != nil {
				return false, "waiting for the runtime's NRI socket"
			}
			if err := ready(plugin, host.unloaded); err != nil {
				return true, "registered; " + err.Error()
			}
			return true, "registered with the runtime"
		})
	})
	wg.Go(func() { notifier.watchdog(ctx) })
	<-ctx.Done()
	log.Info("shutting down")
	notifier.stopping()
	wg.Wait()
	log.Info("stopped")
	return nil
}
