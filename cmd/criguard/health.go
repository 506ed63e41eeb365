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

	"github.com/criguard/criguard/policy"
)

// policyHealth holds why no policy is in force although the file exists.
type policyHealth struct{ err atomic.Pointer[error] }

func (h *policyHealth) set(err error) {
	if err == nil {
		h.err.Store(nil)
		return
	}
	h.err.Store(&err)
}

// runtimeReadiness is what readiness needs of the runtime probe (proxy.RuntimeProbe):
// nil once the runtime answered the last probe, or why not.
type runtimeReadiness interface{ Ready() error }

func ready(runtime runtimeReadiness, policy *policyHealth) error {
	if err := runtime.Ready(); err != nil {
		return err
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
