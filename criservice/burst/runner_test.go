package burst

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/criguard/criguard/cgroup"
)

type fakeSource struct{ targets []Target }

func (f *fakeSource) BurstTargets() []Target { return f.targets }

// fakeCgroup is a container throttled at what was last enforced: it reads the
// controller's limit in force when the enforcer is called, as the real planner does.
type fakeCgroup struct {
	ctl      *Controller
	limit    uint64 // what the file holds
	counter  uint64
	enforced int
	fail     int // the next calls that fail
	gone     bool
}

func (f *fakeCgroup) EnforceInForce(_ context.Context, id string) error {
	f.enforced++
	if f.fail > 0 {
		f.fail--
		return errors.New("write refused")
	}
	if l, ok := f.ctl.InForce(Key{Container: id, Device: vda, Kind: WriteBPS}); ok {
		f.limit = l
	}
	return nil
}

func (f *fakeCgroup) stats(string) ([]cgroup.IOStat, error) {
	if f.gone {
		return nil, fmt.Errorf("read io.stat: %w", fs.ErrNotExist)
	}
	return written(f.counter), nil
}

// write moves a second of a workload that wants demand bytes/s through the limit.
func (f *fakeCgroup) write(demand uint64) {
	if f.limit == 0 {
		f.counter += demand
		return
	}
	f.counter += min(demand, f.limit)
}

func newTestRunner(t *testing.T, saved []Saved, fresh bool) (*Runner, *fakeCgroup, *fakeSource, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	ctl := NewController(saved)
	cg := &fakeCgroup{ctl: ctl, limit: writeSpec.Sustained}
	src := &fakeSource{targets: []Target{target(fresh)}}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	r, err := NewRunner(RunnerOptions{Controller: ctl, Source: src, Enforcer: cg, Stats: cg.stats,
		StatePath: filepath.Join(t.TempDir(), StateFile), Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	return r, cg, src, reg, &logs
}

func TestRunnerBurstsThenHoldsAndLogsEachChangeOnce(t *testing.T) {
	r, cg, _, reg, logs := newTestRunner(t, nil, true)
	ctx, now := context.Background(), time.Unix(1e9, 0)
	var limits []uint64
	for i := range 30 {
		r.Tick(ctx, now.Add(time.Duration(i)*time.Second))
		limits = append(limits, cg.limit)
		cg.write(200 * mib)
	}
	// Fresh: raised to the burst rate at once; two seconds at 50 MiB/s spend 80 of
	// the 100 MiB (a third would overdraw), then the sustained rate holds.
	if limits[0] != 50*mib || limits[1] != 50*mib || limits[2] != 10*mib || limits[29] != 10*mib {
		t.Errorf("limits in force = %v (MiB/s: %d, %d, %d, %d … %d)", limits, limits[0]/mib, limits[1]/mib, limits[2]/mib, limits[3]/mib, limits[29]/mib)
	}
	if got := strings.Count(logs.String(), "limit in force changed"); got != 2 {
		t.Errorf("%d change lines logged, want 2:\n%s", got, logs)
	}
	for reason, want := range map[Reason]float64{ReasonNewBucket: 1, ReasonCreditSpent: 1, ReasonCreditRefilled: 0} {
		if got := testutil.ToFloat64(r.opts.Metrics.changes.WithLabelValues(string(reason))); got != want {
			t.Errorf("changes{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// Two changes, each enforced, and the last checked once more recheckAfter ticks later.
	if cg.enforced != 3 {
		t.Errorf("enforced %d times, want 3 (2 changes + 1 recheck)", cg.enforced)
	}
	if n, _ := testutil.GatherAndCount(reg, "criguard_burst_buckets"); n != 1 {
		t.Errorf("criguard_burst_buckets series: %d", n)
	}
}

func TestRunnerRetriesAFailedWrite(t *testing.T) {
	r, cg, _, reg, _ := newTestRunner(t, nil, true)
	cg.fail = 2
	ctx, now := context.Background(), time.Unix(1e9, 0)
	for i := range 3 {
		r.Tick(ctx, now.Add(time.Duration(i)*time.Second))
	}
	if cg.limit != 50*mib || cg.enforced != 3 {
		t.Errorf("after two failed writes: limit %d, enforced %d times; want the burst rate written on the third", cg.limit, cg.enforced)
	}
	if got := testutil.ToFloat64(r.opts.Metrics.failures); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}
	_ = reg
}

// Across a restart the runner saves what was left, and the next one starts there.
func TestRunnerRestartKeepsTheCreditLeft(t *testing.T) {
	r, cg, _, _, _ := newTestRunner(t, nil, true)
	ctx, now := context.Background(), time.Unix(1e9, 0)
	for i := range 5 {
		r.Tick(ctx, now.Add(time.Duration(i)*time.Second))
		cg.write(200 * mib)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	r.Run(ctx2) // one tick, then the save at exit
	saved, err := LoadState(r.opts.StatePath)
	if err != nil || len(saved) != 1 {
		t.Fatalf("saved = %+v, %v", saved, err)
	}
	left, _ := r.opts.Controller.Credit(wbps)
	if saved[0].Credit > left {
		t.Errorf("saved %.0f, more than the %.0f left", saved[0].Credit, left)
	}
	// The container is not fresh to the new runner: it gets what was saved, less
	// what it wrote meanwhile.
	r2, cg2, _, _, _ := newTestRunner(t, saved, false)
	cg2.counter = cg.counter + 3*mib
	r2.Tick(ctx, now)
	got, _ := r2.opts.Controller.Credit(wbps)
	if want := saved[0].Credit - 3*mib; got != want {
		t.Errorf("credit after restart %.0f, want %.0f", got, want)
	}
}

func TestRunnerDropsAGoneContainer(t *testing.T) {
	r, cg, _, _, logs := newTestRunner(t, nil, true)
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	cg.gone = true
	r.Tick(ctx, now.Add(time.Second))
	if n := r.opts.Controller.Buckets(); n != 0 {
		t.Errorf("%d buckets after the cgroup went", n)
	}
	if strings.Contains(logs.String(), "cannot read") {
		t.Errorf("a gone cgroup was logged as an error:\n%s", logs)
	}
}

// fileID tells a rewritten file (atomicfile renames a new inode in) from one left alone.
func fileID(t *testing.T, path string) uint64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// The loop may sleep only with nothing to act on (no target, no bucket, nothing to
// retry) and its state on disk current; a state that stands still is not written
// again. Run's sleeping itself is internal/tickloop's (tested there).
func TestRunnerIdleOnlyWithNothingToDo(t *testing.T) {
	ctl := NewController(nil)
	cg := &fakeCgroup{ctl: ctl, limit: writeSpec.Sustained}
	src := &fakeSource{}
	statePath := filepath.Join(t.TempDir(), StateFile)
	r, err := NewRunner(RunnerOptions{Controller: ctl, Source: src, Enforcer: cg, Stats: cg.stats, StatePath: statePath})
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	if !r.idle() {
		t.Fatal("not idle with nothing to burst")
	}
	saved := fileID(t, statePath)
	for i := range 2 * saveEvery {
		r.Tick(ctx, now.Add(time.Duration(i+1)*time.Second))
		if !r.idle() {
			t.Fatalf("tick %d: not idle with nothing to burst", i+1)
		}
	}
	if fileID(t, statePath) != saved {
		t.Fatal("the unchanged state file was written again")
	}

	src.targets = []Target{target(true)}
	now = now.Add(time.Minute)
	r.Tick(ctx, now)
	if ctl.Buckets() != 1 || r.idle() {
		t.Fatalf("%d buckets, idle %v with a bursting container; want 1 and busy", ctl.Buckets(), r.idle())
	}
	src.targets = nil
	r.Tick(ctx, now.Add(time.Second))
	if ctl.Buckets() != 0 {
		t.Fatalf("%d buckets after the container went", ctl.Buckets())
	}
	// A recheck still pending keeps it busy until done or dropped.
	for i := 0; !r.idle(); i++ {
		if i > recheckAfter {
			t.Fatal("never idle again after the last bursting container went")
		}
		r.Tick(ctx, now.Add(time.Duration(i+2)*time.Second))
	}
	if b, err := os.ReadFile(statePath); err != nil || strings.Contains(string(b), "c1") {
		t.Fatalf("state file when idle again = %q, %v; want it without the gone container", b, err)
	}
}
