// Package bench measures criguard on the real runtime (`make bench`, build tag bench):
// forwarding overhead against containerd and a thin reference forwarder, apply latency
// after StartContainer, and a create/start/stop/remove soak. This file holds the
// measuring helpers, which need neither root nor a runtime and are unit-tested.
package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of ds, which it
// sorts; 0 for no samples.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	rank = max(1, min(rank, len(ds)))
	return ds[rank-1]
}

// ProcCPU is utime+stime of a process and all its threads, dead ones included, from
// /proc/PID/stat (10 ms resolution).
func ProcCPU(procRoot string, pid int) (time.Duration, error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: %w: no ')' in %q", path, ErrBenchProcFormat, data)
	}
	fields := strings.Fields(string(data[i+1:]))
	// After the name: state(0) ppid … utime is field 14 of the line, index 11 here.
	if len(fields) < 13 {
		return 0, fmt.Errorf("%s: %w: %d fields after the name", path, ErrBenchProcFormat, len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: utime/stime %q: %w", path, f, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ThreadsCPU is the on-CPU time of a process's live threads in nanoseconds, summed
// from /proc/PID/task/*/schedstat: precise enough to charge a batch of a few hundred
// calls, which the 10 ms ticks of ProcCPU are not.
func ThreadsCPU(procRoot string, pid int) (time.Duration, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("list threads in %s: %w", dir, err)
	}
	var total time.Duration
	for _, task := range tasks {
		path := filepath.Join(dir, task.Name(), "schedstat")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended between the listing and the read
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		ns, err := strconv.ParseInt(first, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: on-CPU time %q: %w", path, first, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// VmRSS is the resident set size of a process in bytes, from /proc/PID/status.
func VmRSS(procRoot string, pid int) (uint64, error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid), "status")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: %w: VmRSS line %q", path, ErrBenchProcFormat, sc.Text())
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmRSS %q: %w", path, fields[0], err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: %w: no VmRSS line", path, ErrBenchProcFormat)
}

// Metrics holds the samples of a Prometheus text exposition, keyed by the series as
// written (name plus its label set, e.g. `go_goroutines` or
// `criguard_reconcile_runs_total{result="ok"}`).
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text format: comments skipped, an optional
// timestamp after the value ignored. Label values holding spaces are not supported:
// criguard's labels (method names, codes, results) have none.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("%w: metrics line %q", ErrBenchMetricsFormat, line)
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: value: %w", line, err)
		}
		m[fields[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// Get returns the value of a series, failing when it is absent (a renamed metric
// must not read as zero).
func (m Metrics) Get(series string) (float64, error) {
	v, ok := m[series]
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrBenchNoSeries, series)
	}
	return v, nil
}

// Ratio is a/b, or NaN when b is zero (printed as "n/a").
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// PairedRatios are a[i]/b[i] for the rounds both have, and their median (the mean
// of the two middle ones for an even count): each round's two variants ran minutes
// apart at most, so the pairs cancel the machine's drift that the medians of each
// variant's rounds do not.
func PairedRatios(a, b []float64) (ratios []float64, median float64) {
	for i := range min(len(a), len(b)) {
		ratios = append(ratios, Ratio(a[i], b[i]))
	}
	if len(ratios) == 0 {
		return nil, math.NaN()
	}
	sorted := slices.Clone(ratios)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return ratios, sorted[mid]
	}
	return ratios, (sorted[mid-1] + sorted[mid]) / 2
}

// FormatRatio prints a ratio with two decimals and a ×, or n/a.
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", r)
}

// FormatDuration prints d in µs below 10 ms and in ms above, with 3 significant
// figures, so that tables line up.
func FormatDuration(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 1000:
		return fmt.Sprintf("%.1f µs", us)
	case us < 10000:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.1f ms", us/1000)
}

// MiB prints a byte count in MiB with one decimal.
func MiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// PerfChildren parses `perf report --children --sort symbol -g none --stdio` into
// symbol → inclusive percentage. Lines look like
// "  12.34%   1.23%  [.] pkg.(*T).Method   -   -", the trailing dashes being
// IPC columns that newer perf prints.
func PerfChildren(report []byte) map[string]float64 {
	shares := map[string]float64{}
	for _, line := range strings.Split(string(report), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 || strings.HasPrefix(fields[0], "#") || !strings.HasSuffix(fields[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(fields[0], "%"), 64)
		if err != nil {
			continue
		}
		for i, f := range fields {
			if (f == "[.]" || f == "[k]") && i+1 < len(fields) {
				sym := fields[i+1:]
				for len(sym) > 1 && sym[len(sym)-1] == "-" {
					sym = sym[:len(sym)-1]
				}
				shares[strings.Join(sym, " ")] = pct
				break
			}
		}
	}
	return shares
}

// PerfEventCount reads the "# Event count (approx.): N" header of a perf report: for
// the cpu-clock event, the sampled CPU time in nanoseconds.
func PerfEventCount(report []byte) (float64, error) {
	for _, line := range strings.Split(string(report), "\n") {
		rest, ok := strings.CutPrefix(line, "# Event count (approx.):")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("perf report event count %q: %w", rest, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%w: no event count header in the perf report", ErrBenchPerfFormat)
}
