package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
)

// runtimeProbe asks the runtime for its version now and then: the answer
// feeds /readyz and criguard_runtime_up, and a runtime that comes back after it
// was unreachable triggers a reconcile pass. A runtime that is only slow (the probe
// timed out on a connected channel: busy, not gone) is told apart: nothing of it
// was lost, so its recovery reconciles nothing.
type runtimeProbe struct {
	rt          runtimeapi.RuntimeServiceClient
	state       func() connectivity.State // the channel to the runtime
	metrics     *criservice.Metrics
	log         *slog.Logger
	onRecovered func()
	// timeout bounds each probe; 0 is defaultProbeTimeout.
	timeout time.Duration

	last atomic.Pointer[probeResult]
	// lost is set once the runtime was unreachable, until a recovery reconciled.
	lost bool
}

const defaultProbeTimeout = 2 * time.Second

type runtimeHealth int

const (
	runtimeUp runtimeHealth = iota + 1
	runtimeSlow
	runtimeUnreachable
)

type probeResult struct {
	health runtimeHealth
	err    string
}

// answering reports whether the runtime answered the last probe.
func (p *runtimeProbe) answering() bool {
	last := p.last.Load()
	return last != nil && last.health == runtimeUp
}

func (p *runtimeProbe) run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		p.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// probe asks the runtime once and logs what changed since the last probe.
func (p *runtimeProbe) probe(ctx context.Context) {
	timeout := cmp.Or(p.timeout, defaultProbeTimeout)
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	_, err := p.rt.Version(callCtx, &runtimeapi.VersionRequest{})
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := probeResult{health: runtimeUp}
	switch {
	case err == nil:
	case grpcstatus.Code(err) == codes.DeadlineExceeded && p.state() == connectivity.Ready:
		now = probeResult{health: runtimeSlow, err: fmt.Sprintf("no answer to Version within %s on a connected channel: %v", timeout, err)}
	default:
		now = probeResult{health: runtimeUnreachable, err: err.Error()}
	}
	before := p.last.Swap(&now)
	p.metrics.SetRuntimeUp(now.health == runtimeUp)
	if before != nil && before.health == now.health {
		return
	}
	switch now.health {
	case runtimeSlow:
		p.log.Warn("runtime slow: connected, but the probe timed out; calls still go through", "timeout", timeout, "err", err)
	case runtimeUnreachable:
		p.lost = true
		p.log.Warn("runtime unreachable; callers get Unavailable until it is back", "err", err)
	case runtimeUp:
		switch {
		case p.lost:
			p.lost = false
			p.log.Info("runtime is back; reconciling")
			p.onRecovered()
		case before != nil:
			p.log.Info("runtime answers in time again")
		}
	}
}

// policyHealth holds why no policy is in force although the file exists.
type policyHealth struct{ err atomic.Pointer[error] }

func (h *policyHealth) set(err error) {
	if err == nil {
		h.err.Store(nil)
		return
	}
	h.err.Store(&err)
}

func ready(p *runtimeProbe, policy *policyHealth) error {
	switch last := p.last.Load(); {
	case last == nil:
		return errors.New("runtime not probed yet")
	case last.health == runtimeSlow:
		return fmt.Errorf("runtime slow: %s", last.err)
	case last.health == runtimeUnreachable:
		return fmt.Errorf("runtime unreachable: %s", last.err)
	}
	if err := policy.err.Load(); err != nil {
		return fmt.Errorf("policy not loaded: %w", *err)
	}
	return nil
}

// serveMetrics serves /metrics, /healthz (the process answers) and /readyz
// (the runtime answers, and a policy file that exists has loaded).
func serveMetrics(addr string, reg *prometheus.Registry, readiness func() error, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := readiness(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics serving", "addr", ln.Addr().String())
	return srv, nil
}

func reloadOnSIGHUP(ctx context.Context, w *policy.Watcher) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			w.Reload()
		}
	}
}
