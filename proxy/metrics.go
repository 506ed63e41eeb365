package proxy

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// CallMetrics count the forwarded calls by method and code, with their latency, and
// when kubelet last called. It is the proxy's Observer and KubeletObserver.
type CallMetrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec

	lastKubelet atomic.Int64 // unix seconds of kubelet's last call through criguard
	// lastAnswer is when the runtime last answered a RuntimeService call with OK
	// within DefaultProbeTimeout (unix nanoseconds): the probe's evidence.
	lastAnswer atomic.Int64

	// byMethod holds each known CRI method's children, bound on its first call:
	// resolving labels on every forwarded call would hash them and take a lock
	// each time. Any other name a client sends is counted as "other", so no
	// client can grow the series.
	byMethod map[string]*methodSlot
	other    methodSlot
}

// methodSlot binds one method's children once.
type methodSlot struct {
	name    string
	runtime bool // a RuntimeService method: its answers show the runtime up
	bound   atomic.Pointer[methodMetrics]
}

type methodMetrics struct {
	latency prometheus.Observer
	ok      prometheus.Counter
}

// otherMethod labels every method this build does not know.
const otherMethod = "other"

// NewCallMetrics registers the call metrics with reg.
func NewCallMetrics(reg prometheus.Registerer) *CallMetrics {
	m := &CallMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_cri_calls_total", Help: "CRI calls forwarded, by method (a CRI method this build knows, or other) and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "criguard_cri_call_duration_seconds", Help: "Latency of forwarded CRI calls, including the runtime's time.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		byMethod: map[string]*methodSlot{},
		other:    methodSlot{name: otherMethod},
	}
	for method := range knownMethods {
		m.byMethod[method] = &methodSlot{name: method[strings.LastIndexByte(method, '/')+1:], runtime: strings.Contains(method, ".RuntimeService/")}
	}
	lastKubelet := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "criguard_kubelet_last_call_timestamp_seconds",
		Help: "When kubelet (recognised by its connection's peer process, not by the methods it calls) last called through criguard (it relists every second); 0: never since start. A stale value means kubelet bypasses criguard.",
	}, func() float64 { return float64(m.lastKubelet.Load()) })
	reg.MustRegister(m.calls, m.latency, lastKubelet)
	return m
}

func (m *CallMetrics) bind(slot *methodSlot) *methodMetrics {
	if mm := slot.bound.Load(); mm != nil {
		return mm
	}
	mm := &methodMetrics{latency: m.latency.WithLabelValues(slot.name), ok: m.calls.WithLabelValues(slot.name, codes.OK.String())}
	slot.bound.CompareAndSwap(nil, mm)
	return slot.bound.Load()
}

// ObserveCall implements Observer.
func (m *CallMetrics) ObserveCall(method string, code codes.Code, elapsed time.Duration) {
	if m == nil {
		return
	}
	slot, ok := m.byMethod[method]
	if !ok {
		slot = &m.other
	}
	bound := m.bind(slot)
	bound.latency.Observe(elapsed.Seconds())
	if code == codes.OK {
		bound.ok.Inc()
		if slot.runtime && elapsed <= DefaultProbeTimeout {
			m.lastAnswer.Store(time.Now().UnixNano())
		}
		return
	}
	if code > codes.Unauthenticated {
		code = codes.Unknown // a code gRPC does not define: bounded too
	}
	m.calls.WithLabelValues(slot.name, code.String()).Inc()
}

// KubeletCalled implements KubeletObserver: the proxy tells kubelet's calls from
// crictl's and others' by the peer of their connection.
func (m *CallMetrics) KubeletCalled() {
	if m != nil {
		m.lastKubelet.Store(time.Now().Unix())
	}
}

// LastKubeletCall is when kubelet last called through criguard; zero if it has not
// since criguard started.
func (m *CallMetrics) LastKubeletCall() time.Time {
	if m == nil || m.lastKubelet.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(m.lastKubelet.Load(), 0)
}

// RuntimeAnswered is when the runtime last answered a forwarded RuntimeService call
// with OK within DefaultProbeTimeout; zero if it has not since start. The runtime
// probe takes it for its own Version call (ProbeOptions.Answered).
func (m *CallMetrics) RuntimeAnswered() time.Time {
	if m == nil || m.lastAnswer.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(0, m.lastAnswer.Load())
}
