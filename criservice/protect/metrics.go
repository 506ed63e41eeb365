package protect

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the protection loop's: every change of a limit in force by reason,
// the writes that failed, the yielding lines held and the cost of a tick.
type Metrics struct {
	changes  *prometheus.CounterVec
	failures prometheus.Counter
	lines    prometheus.Gauge
	tick     prometheus.Histogram
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "criguard_protect_limit_changes_total",
			Help: "Changes of a yielding line's limit in force by the protection loop, by reason (tighten, give_back, restored, bounds_changed).",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "criguard_protect_enforce_failures_total", Help: "Limits in force the protection loop could not write; retried on the next tick.",
		}),
		lines: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "criguard_protect_yielding_lines", Help: "Yielding lines the protection loop holds: one per running container, device and bps key that yields.",
		}),
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "criguard_protect_tick_duration_seconds", Help: "Duration of one tick of the protection loop: read pressure, step, write, save.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	reg.MustRegister(m.changes, m.failures, m.lines, m.tick)
	return m
}

func (m *Metrics) changed(reason string) {
	if m != nil {
		m.changes.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.failures.Inc()
	}
}

func (m *Metrics) observe(lines int, seconds float64) {
	if m != nil {
		m.lines.Set(float64(lines))
		m.tick.Observe(seconds)
	}
}
