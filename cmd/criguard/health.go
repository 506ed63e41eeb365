package main

import (
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
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
)

// runtimeProbe asks the runtime for its version now and then: the answer
// feeds /readyz and criguard_runtime_up, and a runtime that comes back
// triggers a reconcile pass.
type runtimeProbe struct {
	rt          runtimeapi.RuntimeServiceClient
	metrics     *criservice.Metrics
	log         *slog.Logger
	onRecovered func()

	up      atomic.Bool
	lastErr atomic.Value // string
}

func (p *runtimeProbe) run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	wasUp := true
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := p.rt.Version(callCtx, &runtimeapi.VersionRequest{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		up := err == nil
		p.up.Store(up)
		p.metrics.SetRuntimeUp(up)
		switch {
		case !up:
			p.lastErr.Store(err.Error())
			if wasUp {
				p.log.Warn("runtime unreachable; callers get Unavailable until it is back", "err", err)
			}
		case !wasUp:
			p.log.Info("runtime is back; reconciling")
			p.onRecovered()
		}
		wasUp = up
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
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
	if !p.up.Load() {
		msg, _ := p.lastErr.Load().(string)
		return fmt.Errorf("runtime unreachable: %s", msg)
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
