package burst

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the burst loop's: every change of a limit in force by reason, the
// writes that failed, the buckets held and the cost of a tick.
type Metrics struct {
	changes  *prometheus.CounterVec
	failures prometheus.Counter
	buckets  prometheus.Gauge
	tick     prometheus.Histogram
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_burst_limit_changes_total",
			Help: "Changes of a limit in force by the burst loop, by reason (credit_spent, credit_refilled, new_bucket, policy_changed).",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "criguard_burst_enforce_failures_total", Help: "Limits in force the burst loop could not write; retried on the next tick.",
		}),
		buckets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "criguard_burst_buckets", Help: "Token buckets held: one per running container, device and bursting key.",
		}),
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "criguard_burst_tick_duration_seconds", Help: "Duration of one tick of the burst loop: sample, step, write, save.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	reg.MustRegister(m.changes, m.failures, m.buckets, m.tick)
	return m
}

func (m *Metrics) changed(reason Reason) {
	if m != nil {
		m.changes.WithLabelValues(string(reason)).Inc()
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.failures.Inc()
	}
}

func (m *Metrics) observe(buckets int, seconds float64) {
	if m != nil {
		m.buckets.Set(float64(buckets))
		m.tick.Observe(seconds)
	}
}
