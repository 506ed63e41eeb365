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
	"slices"
	"strings"
	"sync"
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

// lockedSource is a Source the test changes while Run reads it, counting the reads.
type lockedSource struct {
	mu      sync.Mutex
	targets []Target
	reads   int
}

func (s *lockedSource) BurstTargets() []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return slices.Clone(s.targets)
}

func (s *lockedSource) set(targets ...Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = targets
}

func (s *lockedSource) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
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

// With nothing to burst, the loop neither ticks nor rewrites its state file until a
// container is booked; it bursts that one as before, and sleeps again once it is gone.
func TestRunnerSleepsWhileNothingBursts(t *testing.T) {
	ctl := NewController(nil)
	cg := &fakeCgroup{ctl: ctl, limit: writeSpec.Sustained}
	src := &lockedSource{}
	wake := make(chan struct{}, 1)
	statePath := filepath.Join(t.TempDir(), StateFile)
	r, err := NewRunner(RunnerOptions{Controller: ctl, Source: src, Enforcer: cg, Stats: func(string) ([]cgroup.IOStat, error) { return written(0), nil },
		StatePath: statePath, Interval: time.Millisecond, Wake: wake})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, func() bool { _, err := os.Stat(statePath); return err == nil }, "the empty state saved once")
	saved := fileID(t, statePath)
	reads := waitStill(t, src)
	if fileID(t, statePath) != saved {
		t.Fatal("the idle loop rewrote its unchanged state file")
	}

	src.set(target(true))
	wake <- struct{}{}
	waitFor(t, func() bool { return ctl.Buckets() == 1 }, "the booked container's bucket")
	waitFor(t, func() bool { return src.readCount() > reads+5 }, "ticks while a container bursts")

	src.set()
	waitFor(t, func() bool { return ctl.Buckets() == 0 }, "the bucket gone with its container")
	waitFor(t, func() bool {
		b, err := os.ReadFile(statePath)
		return err == nil && !strings.Contains(string(b), "c1")
	}, "the state saved without the container")
	waitStill(t, src)
}

// waitStill waits until the loop has not read its targets for 50 intervals, and
// fails if it never stops.
func waitStill(t *testing.T, src *lockedSource) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reads := src.readCount()
		time.Sleep(50 * time.Millisecond)
		if src.readCount() == reads {
			return reads
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop kept ticking with nothing to burst")
		}
	}
}

// Without Wake the loop ticks on, as before (and as the tests above drive it).
func TestRunnerWithoutWakeTicksOn(t *testing.T) {
	src := &lockedSource{}
	ctl := NewController(nil)
	r, err := NewRunner(RunnerOptions{Controller: ctl, Source: src, Enforcer: &fakeCgroup{ctl: ctl}, Stats: func(string) ([]cgroup.IOStat, error) { return nil, nil },
		Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, func() bool { return src.readCount() > 5 }, "ticks with nothing to burst")
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
