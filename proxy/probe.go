package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The probe's defaults: one Version call every 5 s, slow past 2 s.
const (
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 2 * time.Second
)

// Health is what the last probe found of the runtime.
type Health int

const (
	// Unprobed: no probe has finished yet.
	Unprobed Health = iota
	// RuntimeUp: Version answered within the timeout.
	RuntimeUp
	// RuntimeSlow: the probe timed out on a connected channel: busy, not gone.
	RuntimeSlow
	// RuntimeUnreachable: no channel to the runtime, or it failed the call.
	RuntimeUnreachable
)

func (h Health) String() string {
	switch h {
	case RuntimeUp:
		return "up"
	case RuntimeSlow:
		return "slow"
	case RuntimeUnreachable:
		return "unreachable"
	}
	return "unprobed"
}

// ProbeOptions configure a RuntimeProbe. The callbacks run on the probe's
// goroutine; metrics and reconciling live outside this package.
type ProbeOptions struct {
	Interval time.Duration // DefaultProbeInterval if zero
	Timeout  time.Duration // DefaultProbeTimeout if zero
	// OnHealth is told the outcome of every probe.
	OnHealth func(Health)
	// OnRecovered is called once when the runtime answers again after it was
	// unreachable: what happened meanwhile was not seen, so the caller reconciles.
	// A runtime that was only slow lost nothing and does not trigger it.
	OnRecovered func()
	// Answered, if set, is when the runtime last answered a forwarded call with
	// OK within the probe's timeout (CallMetrics.RuntimeAnswered). While the
	// runtime is up and answered so within the last half interval, that answer
	// stands for the probe's own Version call: kubelet relists every second, so
	// on a node the probe costs nothing, and a runtime that stops answering is
	// still seen within 1.5 intervals. Recovery always takes the probe's own call.
	Answered func() time.Time
}

// RuntimeProbe asks the runtime for its version now and then over the proxy's
// own runtime connection, and tells a slow runtime from an unreachable one.
type RuntimeProbe struct {
	rt       runtimeapi.RuntimeServiceClient
	state    func() connectivity.State
	log      *slog.Logger
	interval time.Duration
	// timeout bounds each probe.
	timeout     time.Duration
	onHealth    func(Health)
	onRecovered func()
	answered    func() time.Time

	last atomic.Pointer[probeResult]
	// lost is set once the runtime was unreachable, until a recovery was reported.
	lost bool
}

type probeResult struct {
	health Health
	err    string
}

// Probe returns a probe of the runtime connection; Run starts it.
func (p *Proxy) Probe(opts ProbeOptions) *RuntimeProbe {
	r := &RuntimeProbe{
		rt:          runtimeapi.NewRuntimeServiceClient(p.runtime),
		state:       p.runtime.GetState,
		log:         p.log,
		interval:    opts.Interval,
		timeout:     opts.Timeout,
		onHealth:    opts.OnHealth,
		onRecovered: opts.OnRecovered,
		answered:    opts.Answered,
	}
	if r.interval <= 0 {
		r.interval = DefaultProbeInterval
	}
	if r.timeout <= 0 {
		r.timeout = DefaultProbeTimeout
	}
	if r.onHealth == nil {
		r.onHealth = func(Health) {}
	}
	if r.onRecovered == nil {
		r.onRecovered = func() {}
	}
	return r
}

// Run probes at once, then every interval, until ctx ends.
func (r *RuntimeProbe) Run(ctx context.Context) {
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		r.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Health is the outcome of the last probe.
func (r *RuntimeProbe) Health() Health {
	if last := r.last.Load(); last != nil {
		return last.health
	}
	return Unprobed
}

// Ready is nil when the runtime answered the last probe, and otherwise says
// why not (the text /readyz shows).
func (r *RuntimeProbe) Ready() error {
	switch last := r.last.Load(); {
	case last == nil:
		return errors.New("runtime not probed yet")
	case last.health == RuntimeSlow:
		return fmt.Errorf("runtime slow: %s", last.err)
	case last.health == RuntimeUnreachable:
		return fmt.Errorf("runtime unreachable: %s", last.err)
	}
	return nil
}

// probe asks the runtime once and logs what changed since the last probe. A
// runtime that is up and answered a forwarded call within the last interval is
// not asked again: only a change of health needs the probe's own call.
func (r *RuntimeProbe) probe(ctx context.Context) {
	if r.answered != nil && r.Health() == RuntimeUp && time.Since(r.answered()) < r.interval/2 {
		r.onHealth(RuntimeUp)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, r.timeout)
	_, err := r.rt.Version(callCtx, &runtimeapi.VersionRequest{})
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := probeResult{health: RuntimeUp}
	switch {
	case err == nil:
	case status.Code(err) == codes.DeadlineExceeded && r.state() == connectivity.Ready:
		now = probeResult{health: RuntimeSlow, err: fmt.Sprintf("no answer to Version within %s on a connected channel: %v", r.timeout, err)}
	default:
		now = probeResult{health: RuntimeUnreachable, err: err.Error()}
	}
	before := r.last.Swap(&now)
	r.onHealth(now.health)
	if before != nil && before.health == now.health {
		return
	}
	switch now.health {
	case RuntimeSlow:
		r.log.Warn("runtime slow: connected, but the probe timed out; calls still go through", "timeout", r.timeout, "err", err)
	case RuntimeUnreachable:
		r.lost = true
		r.log.Warn("runtime unreachable; callers get Unavailable until it is back", "err", err)
	case RuntimeUp:
		switch {
		case r.lost:
			r.lost = false
			r.log.Info("runtime is back; reconciling")
			r.onRecovered()
		case before != nil:
			r.log.Info("runtime answers in time again")
		}
	}
}
