package protect

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/criguard/criguard/cgroup"
)

type fakeSource struct {
	protected []Protected
	lines     []YieldLine
}

func (f *fakeSource) ProtectTargets() ([]Protected, []YieldLine) { return f.protected, f.lines }

type fakeEnforcer struct {
	calls, fail int
}

func (f *fakeEnforcer) EnforceInForce(context.Context, string) error {
	f.calls++
	if f.fail > 0 {
		f.fail--
		return errors.New("write refused")
	}
	return nil
}

var vda = cgroup.Device{Major: 254}

// An unreadable io.pressure is said once and counts as quiet: a broken file never
// holds the neighbours down. A write that fails is retried on the next tick.
func TestRunnerUnreadablePressureAndFailedWrites(t *testing.T) {
	src := &fakeSource{
		protected: []Protected{{Container: "c1", Dir: "/cg/c1", Who: "web/db", Device: vda, Target: 10}},
		lines:     []YieldLine{{Container: "c2", Who: "batch/etl", Device: vda, Kind: WriteBPS, Floor: 10 * mib, Ceiling: 160 * mib, Capped: true}},
	}
	enf := &fakeEnforcer{fail: 1}
	broken := false
	var logs bytes.Buffer
	r, err := NewRunner(RunnerOptions{Source: src, Enforcer: enf, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Pressure: func(string) (cgroup.Pressure, error) {
			if broken {
				return cgroup.Pressure{}, errors.New("malformed")
			}
			return cgroup.Pressure{Some: cgroup.PressureLine{Avg10: 50}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	r.Tick(context.Background(), now)
	if got := r.InForce(src.lines[0]); got != 80*mib || enf.calls != 1 {
		t.Fatalf("in force %d, %d writes; want 80MiB and one write (which failed)", got, enf.calls)
	}
	r.Tick(context.Background(), now.Add(time.Second))
	if enf.calls != 2 {
		t.Errorf("%d writes, want the failed one retried on the next tick", enf.calls)
	}
	broken = true
	for i := range DefaultConfig.HoldDown + 20 {
		r.Tick(context.Background(), now.Add(time.Duration(i+2)*time.Second))
	}
	if n := strings.Count(logs.String(), "cannot read the protected container's io.pressure"); n != 1 {
		t.Errorf("%d warnings for one broken file, want 1", n)
	}
	if got := r.InForce(src.lines[0]); got != 160*mib {
		t.Errorf("in force %d with the pressure unreadable, want the cap back", got)
	}
}

// The pressure the law sees is the share of the last ticks from io.pressure's "some
// total", not the kernel's avg10, which shows a change seconds late: a reader stalled
// half of the last second is hot at once, while its avg10 still reads 0.
func TestRunnerPressureIsTheShareOfTheLastTicks(t *testing.T) {
	src := &fakeSource{
		protected: []Protected{{Container: "c1", Dir: "/cg/c1", Who: "web/db", Device: vda, Target: 10}},
		lines:     []YieldLine{{Container: "c2", Who: "batch/etl", Device: vda, Kind: WriteBPS, Floor: 10 * mib, Ceiling: 160 * mib, Capped: true}},
	}
	var total time.Duration
	r, err := NewRunner(RunnerOptions{Source: src, Enforcer: &fakeEnforcer{},
		Pressure: func(string) (cgroup.Pressure, error) {
			return cgroup.Pressure{Some: cgroup.PressureLine{Avg10: 0, Total: total}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	tick := func(stalled time.Duration) {
		total += stalled
		now = now.Add(time.Second)
		r.Tick(context.Background(), now)
	}
	tick(0)
	tick(50 * time.Millisecond) // 5 %: under the target
	if got := r.InForce(src.lines[0]); got != 160*mib {
		t.Fatalf("in force %d MiB at 5 %% stalled, want the cap", got/mib)
	}
	tick(500 * time.Millisecond) // (50 + 500) ms over 2 s: 27.5 %
	if got := r.InForce(src.lines[0]); got != 80*mib {
		t.Fatalf("in force %d MiB after half a second stalled, want 80 at once", got/mib)
	}
	// The window is the last 3 ticks: a stall 4 ticks back no longer counts.
	for range 3 {
		tick(10 * time.Millisecond)
	}
	if p := r.sample(src.protected, now.Add(time.Second)); len(p[vda]) != 1 || p[vda][0].Share > 1.5 {
		t.Errorf("share %+v after 3 quiet ticks, want about 1 %%", p[vda])
	}
}

type nopEnforcer struct{}

func (nopEnforcer) EnforceInForce(context.Context, string) error { return nil }

// The loop may sleep only with nothing to act on (nothing protected or yielding, no
// limit held, nothing to retry) and its state on disk current; a state that stands
// still is not written again. Run's sleeping itself is internal/tickloop's.
func TestRunnerIdleOnlyWithNothingToDo(t *testing.T) {
	src := &fakeSource{}
	statePath := filepath.Join(t.TempDir(), StateFile)
	r, err := NewRunner(RunnerOptions{Source: src, Enforcer: nopEnforcer{}, StatePath: statePath,
		Pressure: func(string) (cgroup.Pressure, error) {
			return cgroup.Pressure{Some: cgroup.PressureLine{Avg10: 50}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Unix(1e9, 0)
	r.Tick(ctx, now)
	if !r.idle() {
		t.Fatal("not idle with nothing protected")
	}
	saved := fileID(t, statePath)
	for i := range 2 * saveEvery {
		r.Tick(ctx, now.Add(time.Duration(i+1)*time.Second))
		if !r.idle() {
			t.Fatalf("tick %d: not idle with nothing protected", i+1)
		}
	}
	if fileID(t, statePath) != saved {
		t.Fatal("the unchanged state file was written again")
	}

	yielder := YieldLine{Container: "c2", Who: "batch/etl", Device: vda, Kind: WriteBPS, Floor: 10 * mib, Ceiling: 160 * mib, Capped: true}
	src.protected = []Protected{{Container: "c1", Dir: "/cg/c1", Who: "web/db", Device: vda, Target: 10}}
	src.lines = []YieldLine{yielder}
	now = now.Add(time.Minute)
	r.Tick(ctx, now)
	if r.InForce(yielder) >= 160*mib || r.idle() {
		t.Fatalf("in force %d, idle %v under pressure; want tightened and busy", r.InForce(yielder), r.idle())
	}
	src.protected, src.lines = nil, nil
	r.Tick(ctx, now.Add(time.Second))
	if !r.idle() {
		t.Fatal("not idle once nothing is protected or yields")
	}
	if b, err := os.ReadFile(statePath); err != nil || strings.Contains(string(b), "c2") {
		t.Fatalf("state file when idle again = %q, %v; want it without the gone yielder", b, err)
	}
}

// A limit restored from the last run keeps the loop awake until it is claimed or
// expires: sleeping would keep it forever.
func TestRunnerStaysAwakeForRestoredLimits(t *testing.T) {
	restored := State{Devices: []DeviceState{{Device: vda, Yielders: []YielderState{{Container: "c2", Kind: WriteBPS, Limit: 20 * mib}}}}}
	r, err := NewRunner(RunnerOptions{Source: &fakeSource{}, Enforcer: nopEnforcer{}, Restored: restored,
		Pressure: func(string) (cgroup.Pressure, error) { return cgroup.Pressure{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.Tick(context.Background(), now)
	if r.idle() {
		t.Fatal("idle with a restored limit not yet claimed")
	}
	r.Tick(context.Background(), now.Add(restoredGrace+time.Second))
	if !r.idle() {
		t.Fatal("not idle once the restored limit expired and nothing is protected")
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
