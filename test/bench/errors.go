package bench

import "errors"

var (
	// ErrBenchProcFormat means a /proc file did not have the expected layout.
	ErrBenchProcFormat = errors.New("bench: unexpected /proc format")
	// ErrBenchMetricsFormat means a /metrics line was not `series value [timestamp]`.
	ErrBenchMetricsFormat = errors.New("bench: unexpected metrics line")
	// ErrBenchNoSeries means a metric the benchmark reads is missing from /metrics.
	ErrBenchNoSeries = errors.New("bench: metric series missing")
	// ErrBenchPerfFormat means a perf report lacked what the benchmark reads.
	ErrBenchPerfFormat = errors.New("bench: unexpected perf report")
)
