package criservice

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Metrics are criguard's Prometheus metrics, all under the criguard_ prefix.
type Metrics struct {
	calls          *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	throttles      *prometheus.CounterVec
	applyLatency   prometheus.Histogram
	drift          prometheus.Counter
	reconciles     *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	annotations    *prometheus.CounterVec
	runtimeUp      prometheus.Gauge
	policyLoaded   prometheus.Gauge
	reconcileTime  prometheus.Histogram
	cachedEntities *prometheus.GaugeVec
	conflicts      *prometheus.CounterVec

	lastRelist atomic.Int64 // unix seconds of kubelet's last call through criguard

	// byMethod holds each known CRI method's children, bound on its first call:
	// resolving labels on every forwarded call would hash them and take a lock
	// each time. Any other name a client sends is counted as "other", so no
	// client can grow the series.
	byMethod map[string]*methodSlot
	other    methodSlot
}

// methodSlot binds one method's children once.
type methodSlot struct {
	name  string
	bound atomic.Pointer[methodMetrics]
}

type methodMetrics struct {
	latency prometheus.Observer
	ok      prometheus.Counter
}

// otherMethod labels every method this build does not know.
const otherMethod = "other"

func (m *Metrics) bind(slot *methodSlot) *methodMetrics {
	if mm := slot.bound.Load(); mm != nil {
		return mm
	}
	mm := &methodMetrics{latency: m.latency.WithLabelValues(slot.name), ok: m.calls.WithLabelValues(slot.name, codes.OK.String())}
	slot.bound.CompareAndSwap(nil, mm)
	return slot.bound.Load()
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_cri_calls_total", Help: "CRI calls forwarded, by method and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "criguard_cri_call_duration_seconds", Help: "Latency of forwarded CRI calls, including the runtime's time.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_throttles_total", Help: "Throttle operations on cgroups, by result (applied, reset, unchanged, failed) and scope.",
		}, []string{"result", "scope"}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "criguard_apply_duration_seconds", Help: "Time to resolve a container's cgroup and write its limits after StartContainer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "criguard_reconcile_drift_fixed_total", Help: "cgroups whose limits differed from the policy and were fixed by the reconcile loop.",
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_reconcile_runs_total", Help: "Reconcile passes, by result.",
		}, []string{"result"}),
		reconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "criguard_reconcile_duration_seconds", Help: "Duration of a reconcile pass.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_policy_reloads_total", Help: "Policy loads, by result (ok, error).",
		}, []string{"result"}),
		annotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_annotations_ignored_total", Help: "Pod annotations ignored or clamped because they were invalid or over the policy's bounds.",
		}, []string{"reason"}),
		runtimeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "criguard_runtime_up", Help: "1 when the container runtime answered the last probe, 0 otherwise.",
		}),
		policyLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "criguard_policy_loaded", Help: "1 when a policy is in force, 0 when criguard only forwards.",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_limit_conflicts_total", Help: "Limits criguard leaves to another owner of the same key (a systemd unit property), each counted once.",
		}, []string{"with"}),
		cachedEntities: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "criguard_cached_objects", Help: "Pods and containers in criguard's metadata cache.",
		}, []string{"kind"}),
	}
	lastKubelet := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "criguard_kubelet_last_call_timestamp_seconds",
		Help: "When kubelet (recognised by its connection's peer process, not by the methods it calls) last called through criguard (it relists every second); 0: never since start. A stale value means kubelet bypasses criguard.",
	}, func() float64 { return float64(m.lastRelist.Load()) })
	m.byMethod = map[string]*methodSlot{}
	for _, sd := range []grpc.ServiceDesc{runtimeapi.RuntimeService_ServiceDesc, runtimeapi.ImageService_ServiceDesc} {
		for _, md := range sd.Methods {
			m.byMethod["/"+sd.ServiceName+"/"+md.MethodName] = &methodSlot{name: md.MethodName}
		}
		for _, st := range sd.Streams {
			m.byMethod["/"+sd.ServiceName+"/"+st.StreamName] = &methodSlot{name: st.StreamName}
		}
	}
	m.other.name = otherMethod
	reg.MustRegister(m.calls, m.latency, m.throttles, m.applyLatency, m.drift, m.reconciles,
		m.reconcileTime, m.reloads, m.annotations, m.runtimeUp, m.policyLoaded, m.cachedEntities, m.conflicts, lastKubelet)
	return m
}

// ObserveCall implements proxy.Observer.
func (m *Metrics) ObserveCall(method string, code codes.Code, elapsed time.Duration) {
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
		return
	}
	if code > codes.Unauthenticated {
		code = codes.Unknown // a code gRPC does not define: bounded too
	}
	m.calls.WithLabelValues(slot.name, code.String()).Inc()
}

// KubeletCalled implements proxy.KubeletObserver: the proxy tells kubelet's calls
// from crictl's and others' by the peer of their connection.
func (m *Metrics) KubeletCalled() {
	if m != nil {
		m.lastRelist.Store(time.Now().Unix())
	}
}

// LastKubeletCall is when kubelet last called through criguard;
// zero if it has not since criguard started.
func (m *Metrics) LastKubeletCall() time.Time {
	if m == nil || m.lastRelist.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(m.lastRelist.Load(), 0)
}

// PolicyReloaded counts a policy load.
func (m *Metrics) PolicyReloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("error").Inc()
	}
}

// SetPolicyLoaded records whether a policy is in force.
func (m *Metrics) SetPolicyLoaded(loaded bool) {
	if m == nil {
		return
	}
	m.policyLoaded.Set(boolGauge(loaded))
}

// SetRuntimeUp records whether the runtime answered.
func (m *Metrics) SetRuntimeUp(up bool) {
	if m == nil {
		return
	}
	m.runtimeUp.Set(boolGauge(up))
}

func (m *Metrics) throttle(result, scope string) {
	if m != nil {
		m.throttles.WithLabelValues(result, scope).Inc()
	}
}

func (m *Metrics) conflict(with string) {
	if m != nil {
		m.conflicts.WithLabelValues(with).Inc()
	}
}

func (m *Metrics) annotationsIgnored(reason string, n int) {
	if m != nil {
		m.annotations.WithLabelValues(reason).Add(float64(n))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
