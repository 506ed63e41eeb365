package criservice

import (
	"github.com/prometheus/client_golang/prometheus"
)

// workloadLabels label every per-workload series; container is empty for a
// pod's own cgroup.
var workloadLabels = []string{"namespace", "pod", "container"}

// workloadCollector exports SampleUsage on every scrape. It keeps nothing
// between scrapes, so a container that goes takes its series with it.
type workloadCollector struct {
	reporter               *Reporter
	limit, bytes, ops, psi *prometheus.Desc
}

// WorkloadCollector is the per-workload metrics collector (--metrics-workloads):
// limits read back from each cgroup, bytes and operations done per device, and
// on v2 the I/O pressure stall time. A scrape reads files only.
func (s *Reporter) WorkloadCollector() prometheus.Collector {
	device := append(append([]string{}, workloadLabels...), "device", "op")
	return &workloadCollector{
		reporter: s,
		limit: prometheus.NewDesc("criguard_io_limit",
			"I/O limit in force, read back from the cgroup: bytes/s (read_bps, write_bps) or operations/s (read_iops, write_iops). No series: no limit.",
			device, nil),
		bytes: prometheus.NewDesc("criguard_io_bytes_total",
			"Bytes read and written by the cgroup since it was created (v2 io.stat, v1 blkio.throttle.io_service_bytes).",
			device, nil),
		ops: prometheus.NewDesc("criguard_io_operations_total",
			"Read and write operations of the cgroup since it was created (v2 io.stat, v1 blkio.throttle.io_serviced).",
			device, nil),
		psi: prometheus.NewDesc("criguard_io_pressure_stalled_seconds_total",
			"Time some (or all: full) of the cgroup's tasks stalled on I/O, from io.pressure (cgroup v2 only).",
			append(append([]string{}, workloadLabels...), "kind"), nil),
	}
}

func (c *workloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limit
	ch <- c.bytes
	ch <- c.ops
	ch <- c.psi
}

func (c *workloadCollector) Collect(ch chan<- prometheus.Metric) {
	// A container restarted by kubelet may briefly sit in the cache next to its
	// successor under the same names: one series per name, or the scrape fails.
	seen := map[[3]string]bool{}
	for _, u := range c.reporter.SampleUsage() {
		key := [3]string{u.Namespace, u.Pod, u.Container}
		if seen[key] {
			continue
		}
		seen[key] = true
		labels := key[:]
		for _, l := range u.Limits {
			for _, v := range []struct {
				op    string
				value uint64
			}{{"read_bps", l.ReadBPS}, {"write_bps", l.WriteBPS}, {"read_iops", l.ReadIOPS}, {"write_iops", l.WriteIOPS}} {
				if v.value != 0 {
					ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(v.value), append(labels, l.Device.String(), v.op)...)
				}
			}
		}
		for _, s := range u.Stats {
			dev := s.Device.String()
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.ReadBytes), append(labels, dev, "read")...)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.WriteBytes), append(labels, dev, "write")...)
			ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.ReadIOs), append(labels, dev, "read")...)
			ch <- prometheus.MustNewConstMetric(c.ops, prometheus.CounterValue, float64(s.WriteIOs), append(labels, dev, "write")...)
		}
		if p := u.Pressure; p != nil {
			ch <- prometheus.MustNewConstMetric(c.psi, prometheus.CounterValue, p.Some.Total.Seconds(), append(labels, "some")...)
			ch <- prometheus.MustNewConstMetric(c.psi, prometheus.CounterValue, p.Full.Total.Seconds(), append(labels, "full")...)
		}
	}
}
