package bench

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
	} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("Percentile of one sample = %v, want 7", got)
	}
}

// fakeProc writes files under a temp /proc for pid 42 and returns its root.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, text := range files {
		path := filepath.Join(root, "42", name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestProcCPU(t *testing.T) {
	// A command name with a space and a ')' must not shift the fields; utime 250 and
	// stime 130 ticks are 3.8 s.
	stat := "42 (crazy) name) S 1 42 42 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 1000 1000000 500 0\n"
	root := fakeProc(t, map[string]string{"stat": stat})
	got, err := ProcCPU(root, 42)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3800 * time.Millisecond; got != want {
		t.Errorf("ProcCPU = %v, want %v", got, want)
	}

	root = fakeProc(t, map[string]string{"stat": "42 (short) S 1 2 3\n"})
	if _, err := ProcCPU(root, 42); !errors.Is(err, ErrBenchProcFormat) {
		t.Errorf("ProcCPU of a short line: err = %v, want ErrBenchProcFormat", err)
	}
	if _, err := ProcCPU(t.TempDir(), 42); err == nil || !strings.Contains(err.Error(), "42/stat") {
		t.Errorf("ProcCPU of a missing process: err = %v, want one naming the file", err)
	}
}

func TestThreadsCPU(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"task/42/schedstat": "1500000 200 10\n",
		"task/43/schedstat": "2500000 0 3\n",
	})
	got, err := ThreadsCPU(root, 42)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 * time.Millisecond; got != want {
		t.Errorf("ThreadsCPU = %v, want %v", got, want)
	}
	root = fakeProc(t, map[string]string{"task/42/schedstat": "lots 0 0\n"})
	if _, err := ThreadsCPU(root, 42); err == nil {
		t.Error("ThreadsCPU accepted a non-numeric schedstat")
	}
}

func TestOwnProcess(t *testing.T) {
	// The real /proc of this test: the parsers must agree with the kernel's layout.
	pid := os.Getpid()
	if _, err := ProcCPU("/proc", pid); err != nil {
		t.Errorf("ProcCPU(self): %v", err)
	}
	threads, err := ThreadsCPU("/proc", pid)
	if err != nil {
		t.Errorf("ThreadsCPU(self): %v", err)
	}
	if threads <= 0 {
		t.Errorf("ThreadsCPU(self) = %v, want > 0 for a running test", threads)
	}
	rss, err := VmRSS("/proc", pid)
	if err != nil {
		t.Fatalf("VmRSS(self): %v", err)
	}
	if rss < 1<<20 || rss > 4<<30 {
		t.Errorf("VmRSS(self) = %d bytes, want a Go test's size (1 MiB…4 GiB)", rss)
	}
}

func TestVmRSS(t *testing.T) {
	root := fakeProc(t, map[string]string{"status": "Name:\tcriguard\nVmPeak:\t 9000 kB\nVmRSS:\t   20480 kB\nThreads:\t7\n"})
	got, err := VmRSS(root, 42)
	if err != nil {
		t.Fatal(err)
	}
	if got != 20<<20 {
		t.Errorf("VmRSS = %d, want %d", got, 20<<20)
	}
	root = fakeProc(t, map[string]string{"status": "Name:\tkthread\n"})
	if _, err := VmRSS(root, 42); !errors.Is(err, ErrBenchProcFormat) {
		t.Errorf("VmRSS without the line: err = %v, want ErrBenchProcFormat", err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 23
process_resident_memory_bytes 1.8e+07
criguard_reconcile_runs_total{result="ok"} 3 1700000000000
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		"go_goroutines":                              23,
		"process_resident_memory_bytes":              18e6,
		`criguard_reconcile_runs_total{result="ok"}`: 3,
	} {
		got, err := m.Get(series)
		if err != nil || got != want {
			t.Errorf("Get(%s) = %v, %v; want %v", series, got, err, want)
		}
	}
	if _, err := m.Get("process_open_fds"); !errors.Is(err, ErrBenchNoSeries) {
		t.Errorf("Get of a missing series: err = %v, want ErrBenchNoSeries", err)
	}
	if _, err := ParseMetrics(strings.NewReader("lonely\n")); !errors.Is(err, ErrBenchMetricsFormat) {
		t.Errorf("ParseMetrics of a bare name: err = %v, want ErrBenchMetricsFormat", err)
	}
	if _, err := ParseMetrics(strings.NewReader("x notanumber\n")); err == nil {
		t.Error("ParseMetrics accepted a non-numeric value")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{FormatRatio(Ratio(1.05, 1)), "1.05×"},
		{FormatRatio(Ratio(1, 0)), "n/a"},
		{FormatDuration(123456 * time.Nanosecond), "123.5 µs"},
		{FormatDuration(2500 * time.Microsecond), "2.50 ms"},
		{FormatDuration(42 * time.Millisecond), "42.0 ms"},
		{MiB(15 << 20), "15.0 MiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if !math.IsNaN(Ratio(3, 0)) {
		t.Error("Ratio(3, 0) is not NaN")
	}
}

func TestPerfChildren(t *testing.T) {
	report := `# Children      Self  Symbol                       IPC   [IPC Coverage]
# ........  ........  ...........................
#
    62.49%     0.60%  [k] do_syscall_64                 -      -
    11.55%     0.05%  [.] google.golang.org/grpc.(*Server).handleStream   -      -
     0.61%     0.61%  [.] type:.eq.[2]interface {}
bogus line
`
	got := PerfChildren([]byte(report))
	want := map[string]float64{
		"do_syscall_64": 62.49,
		"google.golang.org/grpc.(*Server).handleStream": 11.55,
		"type:.eq.[2]interface {}":                      0.61,
	}
	if len(got) != len(want) {
		t.Errorf("PerfChildren parsed %d symbols %v, want %d", len(got), got, len(want))
	}
	for sym, pct := range want {
		if got[sym] != pct {
			t.Errorf("PerfChildren[%q] = %v, want %v", sym, got[sym], pct)
		}
	}
}

func TestPerfEventCount(t *testing.T) {
	got, err := PerfEventCount([]byte("# Samples: 10K of event 'cpu-clock:pppH'\n# Event count (approx.): 2037407400\n#\n"))
	if err != nil || got != 2037407400 {
		t.Errorf("PerfEventCount = %v, %v; want 2037407400", got, err)
	}
	if _, err := PerfEventCount([]byte("# Samples: 0\n")); !errors.Is(err, ErrBenchPerfFormat) {
		t.Errorf("PerfEventCount without the header: err = %v, want ErrBenchPerfFormat", err)
	}
}

// Each round's ratio, in round order, and their median: the middle one, or the mean
// of the two middle ones; rounds one variant lacks are left out.
func TestPairedRatios(t *testing.T) {
	ratios, median := PairedRatios([]float64{110, 100, 300, 120}, []float64{100, 100, 200, 100, 100})
	if want := []float64{1.1, 1, 1.5, 1.2}; !slices.EqualFunc(ratios, want, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) {
		t.Errorf("ratios %v, want %v", ratios, want)
	}
	if math.Abs(median-1.15) > 1e-9 {
		t.Errorf("median of an even count %v, want 1.15", median)
	}
	if _, median := PairedRatios([]float64{3, 1, 2}, []float64{1, 1, 1}); median != 2 {
		t.Errorf("median of an odd count %v, want 2", median)
	}
	if ratios, median := PairedRatios(nil, []float64{1}); ratios != nil || !math.IsNaN(median) {
		t.Errorf("no pair: %v, %v, want none and NaN", ratios, median)
	}
}
