package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/proxy"
)

type serveConfig struct {
	listen          string
	runtimeEndpoint string
	imageEndpoint   string
	socketMode      fileMode
	shutdownGrace   time.Duration
	maxMsgSize      int
	logLevel        slog.Level
	logFormat       string

	policyPath        string
	stateDir          string
	resolver          string
	containerdAddress string
	containerdNS      string
	dockerEndpoint    string
	failClosed        bool
	dryRun            bool
	reconcileInterval time.Duration
	readBackMaxAge    time.Duration
	burstInterval     time.Duration
	protectInterval   time.Duration
	applyTimeout      time.Duration
	metricsAddr       string
	metricsWorkloads  bool

	// procRoot and sysRoot replace /proc and /sys in tests; never flags.
	procRoot, sysRoot string
}

// fileMode parses an octal permission such as 0660.
type fileMode fs.FileMode

func (m *fileMode) String() string { return fmt.Sprintf("%#o", fs.FileMode(*m)) }
func (m *fileMode) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want an octal mode such as 0660, got %q", s)
	}
	*m = fileMode(v)
	return nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := serveConfig{socketMode: 0o660}
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&cfg.listen, "listen", "unix:///run/criguard/criguard.sock", "socket kubelet and crictl connect to")
	fs.StringVar(&cfg.imageEndpoint, "image-endpoint", "", "the image service's CRI socket (default: the runtime endpoint)")
	fs.Var(&cfg.socketMode, "socket-mode", "permissions of the listen socket")
	fs.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight calls may finish after SIGTERM")
	fs.IntVar(&cfg.maxMsgSize, "max-msg-size", proxy.DefaultMaxMsgSize, "largest CRI message forwarded each way, in bytes")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	addRuntimeFlags(fs, &cfg)
	fs.BoolVar(&cfg.failClosed, "fail-closed", false, "fail StartContainer (and stop the container) when its throttle cannot be applied")
	fs.BoolVar(&cfg.dryRun, "dry-run", false, "log the cgroup writes criguard would make, and make none")
	addReconcileFlags(fs, &cfg)
	fs.DurationVar(&cfg.burstInterval, "burst-interval", burst.DefaultInterval, "how often the burst loop samples I/O counters and moves limits in force (0: off)")
	fs.DurationVar(&cfg.protectInterval, "protect-interval", protect.DefaultInterval, "how often the protection loop reads protected pods' io.pressure and moves yielding limits (0: off; the law counts ticks)")
	fs.DurationVar(&cfg.applyTimeout, "apply-timeout", 2*time.Second, "longest time spent applying a throttle after StartContainer")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&cfg.metricsWorkloads, "metrics-workloads", false, "export limits, usage and I/O pressure per namespace/pod/container/device (one series set per container)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("serve takes no arguments, got %q", fs.Args())}
	}
	log, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	return serve(ctx, cfg, log)
}

func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	var svc *criservice.Service // set before the watcher runs
	var host *engineHost
	host, err := startEngineHost(cfg, "proxy", log, func() {
		svc.PolicyChanged()
		host.kick()
	})
	if err != nil {
		return err
	}
	defer host.release()
	calls := proxy.NewCallMetrics(host.reg)
	p, err := proxy.New(proxy.Options{
		RuntimeEndpoint: cfg.runtimeEndpoint,
		ImageEndpoint:   cfg.imageEndpoint,
		MaxMsgSize:      cfg.maxMsgSize,
		Logger:          log,
		Observer:        calls,
	})
	if err != nil {
		return err
	}
	rt := runtimeapi.NewRuntimeServiceClient(p.RuntimeConn())
	svc, err = newService(cfg, rt, func() *policy.Policy { return host.watcher.Current() }, host.metrics, log)
	if err != nil {
		return err
	}
	for method, h := range criservice.CRIHooks(svc) {
		p.Handle(method, proxy.Hook{Before: h.Before, After: h.After, Answer: h.Answer})
	}

	ln, activated, err := listenCRI(cfg.listen, fs.FileMode(cfg.socketMode), log)
	if err != nil {
		return err
	}
	log.Info("criguard serving", "version", version, "listen", ln.Addr().String(), "socket_activated", activated,
		"runtime", cfg.runtimeEndpoint, "policy", cfg.policyPath, "fail_closed", cfg.failClosed, "dry_run", cfg.dryRun)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	probe := p.Probe(proxy.ProbeOptions{
		OnHealth:    func(h proxy.Health) { host.metrics.SetRuntimeUp(h == proxy.RuntimeUp) },
		OnRecovered: host.kick, // what happened while the runtime was gone was not seen
		Answered:    calls.RuntimeAnswered,
	})
	wg.Go(func() { probe.Run(ctx) })
	if cfg.stateDir != "" {
		wg.Go(func() { recordKubeletCalls(ctx, cfg.stateDir, calls, kubeletSeenLook, log) })
	}
	if err := host.runEngine(ctx, &wg, svc); err != nil {
		cancel()
		wg.Wait()
		ln.Close()
		return err
	}
	var metricsSrv *http.Server
	if cfg.metricsAddr != "" {
		metricsSrv, err = serveMetrics(cfg.metricsAddr, host.reg, func() error {
			return ready(probe, host.unloaded)
		}, log)
		if err != nil {
			cancel()
			wg.Wait()
			ln.Close()
			return err
		}
	}

	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	notifier := systemdNotifier{log: log}
	wg.Go(func() {
		notifier.readyWhen(ctx, func() (bool, string) { return readyForSystemd(probe, host.unloaded) })
	})
	wg.Go(func() { notifier.watchdog(ctx) })
	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.shutdownGrace)
		notifier.stopping()
		p.Shutdown(cfg.shutdownGrace)
		err = <-served
	}
	cancel()
	wg.Wait()
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	svc.Close()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newService builds the criservice for this host: cgroup mode, I/O backend and resolvers.
func newService(cfg serveConfig, rt runtimeapi.RuntimeServiceClient, current func() *policy.Policy, metrics *criservice.Metrics, log *slog.Logger) (*criservice.Service, error) {
	hier, err := cgroup.DetectHost(cfg.procRoot)
	if err != nil {
		return nil, fmt.Errorf("detect cgroup mode: %w", err)
	}
	io, err := hier.IO()
	if err != nil {
		return nil, fmt.Errorf("cgroup I/O controller: %w", err)
	}
	controller := ""
	if io.Version() == 1 {
		controller = "blkio"
	}
	resolver, err := resolve.New(resolve.Config{
		Mode:                cfg.resolver,
		Runtime:             rt,
		ContainerdAddress:   cfg.containerdAddress,
		ContainerdNamespace: cfg.containerdNS,
		DockerEndpoint:      cfg.dockerEndpoint,
		ProcRoot:            cfg.procRoot,
		ProcController:      controller,
		Logger:              log,
		Timeout:             cfg.applyTimeout,
	})
	if err != nil {
		return nil, err
	}
	log.Info("cgroup hierarchy", "mode", hier.Mode().String(), "io_version", io.Version(), "io_mount", io.Mount())
	var unitWeights criservice.UnitWeights
	var unitLimits criservice.UnitLimits
	onSystemd := cfg.sysRoot == "" && runningSystemd()
	if onSystemd {
		// On systemd's own units the weights go through systemd, and so do the limits
		// on a disk a unit sets I/O properties for (connected on first use).
		units := &cgroup.SystemdUnits{Version: io.Version()}
		unitWeights, unitLimits = units, units
	}
	return criservice.New(criservice.Options{
		UnitWeights:     unitWeights,
		UnitLimits:      unitLimits,
		PreStartDropIns: onSystemd && io.Version() == 2,
		Runtime:         rt,
		IO:              io,
		Controllers:     hier,
		Resolver:        resolver,
		Devices:         cgroup.DeviceResolver{ProcRoot: cfg.procRoot, SysRoot: cfg.sysRoot},
		Policy:          current,
		StateDir:        cfg.stateDir,
		FailClosed:      cfg.failClosed,
		DryRun:          cfg.dryRun,
		ApplyTimeout:    cfg.applyTimeout,
		ReadBackMaxAge:  cfg.readBackMaxAge,
		Logger:          log,
		Metrics:         metrics,
	})
}

// runningSystemd reports whether systemd is the init system (sd_booted(3)): then
// systemd owns the cgroups of its units.
func runningSystemd() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// startPolicy loads the policy file (or its last good copy) and builds its watcher,
// which serve and nri run: changed is called after each reload that changed it.
// A file refused at start is not fatal unless fail-closed: refusing to start would
// cut kubelet off the runtime (or leave the runtime without criguard).
func startPolicy(cfg serveConfig, metrics *criservice.Metrics, log *slog.Logger, changed func()) (*policy.Watcher, *policyHealth, error) {
	unloaded := &policyHealth{}
	var watcher *policy.Watcher
	watchOpts := []policy.WatcherOption{policy.WithLogger(log)}
	if cfg.stateDir != "" {
		watchOpts = append(watchOpts, policy.WithLastGood(filepath.Join(cfg.stateDir, lastGoodFile)))
	}
	watcher, err := policy.NewWatcher(cfg.policyPath, func(r policy.ReloadResult) {
		metrics.PolicyReloaded(r.Err == nil)
		if r.Err != nil {
			if watcher.Current() == nil {
				unloaded.set(r.Err)
			}
			log.Error("policy reload refused; the last good policy stays in force", "file", cfg.policyPath, "err", r.Err)
			return
		}
		unloaded.set(nil)
		metrics.SetPolicyLoaded(r.Policy != nil)
		if r.Changed {
			log.Info("policy reloaded", "file", cfg.policyPath, "loaded", r.Policy != nil)
			changed()
		}
	}, watchOpts...)
	var refused *policy.StartError
	errors.As(err, &refused)
	switch {
	case refused != nil && cfg.failClosed:
		return nil, nil, fmt.Errorf("policy: %w", refused.Err)
	case refused != nil:
		// The watcher runs the last good policy, or keeps hands off.
		metrics.PolicyReloaded(false)
		unloaded.set(err)
		log.Error("policy refused at start; limits in place are kept until the file is fixed", "file", cfg.policyPath, "err", err, "last_good_err", refused.LastGoodErr)
	case err != nil:
		return nil, nil, fmt.Errorf("policy: %w", err)
	case watcher.Current() == nil:
		metrics.PolicyReloaded(true)
		log.Warn("no policy file; hands off (forwarding only, nothing written or reset) until it appears", "file", cfg.policyPath)
	default:
		metrics.PolicyReloaded(true)
	}
	metrics.SetPolicyLoaded(watcher.Current() != nil)
	return watcher, unloaded, nil
}
