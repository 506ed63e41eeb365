package criservice

import (
	"sync/atomic"

	"github.com/criguard/criguard/cgroup"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics (throttles, reconcile, policy,
// runtime), all under the criguard_ prefix; the forwarded calls' are the proxy's.
type Metrics struct {
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
	// limitWatch answers the read-back metrics once the Service made its watch.
	limitWatch atomic.Pointer[cgroup.LimitWatch]
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
	reg.MustRegister(m.throttles, m.applyLatency, m.drift, m.reconciles,
		m.reconcileTime, m.reloads, m.annotations, m.runtimeUp, m.policyLoaded, m.cachedEntities, m.conflicts)
	watchCount := func(pick func(fromMemory, fromFiles uint64, watched int) float64) func() float64 {
		return func() float64 {
			if w := m.limitWatch.Load(); w != nil {
				return pick(w.Counts())
			}
			return 0
		}
	}
	reads := func(from string) prometheus.CounterOpts {
		return prometheus.CounterOpts{
			Name: "criguard_limit_reads_total", ConstLabels: prometheus.Labels{"from": from},
			Help: "cgroups' limits read back by a pass, explain or top: from the files (written since the last read, read too long ago, or unwatched), or from memory (unchanged since, as inotify shows). Counted while --read-back-max-age is on.",
		}
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(reads("files"), watchCount(func(_, files uint64, _ int) float64 { return float64(files) })),
		prometheus.NewCounterFunc(reads("memory"), watchCount(func(memory, _ uint64, _ int) float64 { return float64(memory) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "criguard_limit_watches", Help: "cgroups whose limit files criguard watches (--read-back-max-age).",
		}, watchCount(func(_, _ uint64, watched int) float64 { return float64(watched) })),
	)
	return m
}

// watchLimits has the read-back metrics answered by w.
func (m *Metrics) watchLimits(w *cgroup.LimitWatch) {
	if m != nil && w != nil {
		m.limitWatch.Store(w)
	}
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
