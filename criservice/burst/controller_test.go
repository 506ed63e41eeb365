package burst

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

var vda = cgroup.Device{Major: 254, Minor: 0}

var writeSpec = Spec{Sustained: 10 * mib, Burst: 50 * mib, Credit: 100 * mib}

func target(fresh bool) Target {
	return Target{Container: "c1", Dir: "/cg/c1", Fresh: fresh, Lines: []Line{{Device: vda, Kind: WriteBPS, Spec: writeSpec}}}
}

func written(n uint64) []cgroup.IOStat {
	return []cgroup.IOStat{{Device: vda, WriteBytes: n, ReadBytes: 7}}
}

var wbps = Key{Container: "c1", Device: vda, Kind: WriteBPS}

func TestControllerFreshStartsFullOthersEmpty(t *testing.T) {
	c := NewController(nil)
	changes := c.Observe(target(true), written(0), 0)
	if len(changes) != 1 || changes[0].Reason != ReasonNewBucket || changes[0].From != 10*mib || changes[0].To != 50*mib {
		t.Fatalf("changes = %+v, want new_bucket 10MiB → 50MiB", changes)
	}
	if credit, _ := c.Credit(wbps); credit != 100*mib {
		t.Errorf("a fresh container's credit %.0f, want full", credit)
	}

	c = NewController(nil)
	if changes := c.Observe(target(false), written(123*mib), 0); len(changes) != 0 {
		t.Fatalf("changes = %+v for a container found running with no saved credit, want none", changes)
	}
	if l, ok := c.InForce(wbps); !ok || l != 10*mib {
		t.Errorf("in force %d (%v), want the sustained rate", l, ok)
	}
	if credit, _ := c.Credit(wbps); credit != 0 {
		t.Errorf("credit %.0f for a container criguard knows nothing of, want 0", credit)
	}
}

// A restart restores the credit left, less what the counter grew by since the
// save, with no refill for the time criguard was away.
func TestControllerRestartNeverGrantsMore(t *testing.T) {
	c := NewController(nil)
	c.Observe(target(true), written(1000*mib), 0)
	c.Observe(target(true), written(1050*mib), tick) // 40 above sustained: 60 left
	saved := c.Snapshot()
	path := filepath.Join(t.TempDir(), StateFile)
	b, err := encodeState(saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadState(path)
	if err != nil || !slices.Equal(loaded, saved) {
		t.Fatalf("LoadState = %+v, %v; want %+v", loaded, err, saved)
	}
	tests := []struct {
		name    string
		counter uint64
		want    float64
	}{
		{"idle while away", 1050 * mib, 60 * mib},
		{"wrote 45 MiB after the save", 1095 * mib, 15 * mib},
		{"cgroup recreated, 5 MiB since", 5 * mib, 55 * mib},
		{"wrote more than was left", 1200 * mib, -90 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewController(loaded)
			c.Observe(target(false), written(tt.counter), 0)
			credit, _ := c.Credit(wbps)
			if credit != tt.want {
				t.Errorf("credit after restart %.0f MiB, want %.0f MiB", credit/mib, tt.want/mib)
			}
			if credit > 60*mib {
				t.Errorf("a restart granted %.0f MiB, more than the 60 MiB left", credit/mib)
			}
		})
	}
	// Fresh or not, a saved bucket is restored, not refilled.
	c = NewController(loaded)
	c.Observe(target(true), written(1050*mib), 0)
	if credit, _ := c.Credit(wbps); credit != 60*mib {
		t.Errorf("a saved bucket of a container marked fresh restarts with %.0f MiB, want the 60 left", credit/mib)
	}
}

func TestLoadStateMissingOrCorruptGivesNoCredit(t *testing.T) {
	dir := t.TempDir()
	saved, err := LoadState(filepath.Join(dir, "absent.json"))
	if err != nil || saved != nil {
		t.Errorf("missing file: %+v, %v; want nothing and no error", saved, err)
	}
	for name, content := range map[string]string{
		"truncated":    `{"version":1,"buckets":[{"container":"c1","dev`,
		"version":      `{"version":7,"buckets":[]}`,
		"bad device":   `{"version":1,"buckets":[{"container":"c1","device":"vda","kind":"wbps","credit":1,"counter":0}]}`,
		"bad kind":     `{"version":1,"buckets":[{"container":"c1","device":"254:0","kind":"xbps","credit":1,"counter":0}]}`,
		"no container": `{"version":1,"buckets":[{"container":"","device":"254:0","kind":"wbps","credit":1,"counter":0}]}`,
	} {
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		saved, err := LoadState(path)
		if err == nil {
			t.Errorf("%s: LoadState = %+v, want an error", name, saved)
		}
		// What the caller does with it: no saved credit, so a running container starts empty.
		c := NewController(nil)
		c.Observe(target(false), written(0), 0)
		if credit, _ := c.Credit(wbps); credit != 0 {
			t.Errorf("%s: credit %.0f, want 0", name, credit)
		}
	}
}

// The planner lays the limits in force over the plan: only keys at their sustained
// rate, only with a bucket, and never another device or key.
func TestLimitsInForce(t *testing.T) {
	c := NewController(nil)
	tg := target(true)
	plan := []cgroup.IOLimit{{Device: vda, WriteBPS: 10 * mib, ReadBPS: 3 * mib}, {Device: cgroup.Device{Major: 8}, WriteBPS: 10 * mib}}
	if got := c.LimitsInForce(tg, plan); !slices.Equal(got, plan) {
		t.Errorf("without a bucket: %+v, want the plan unchanged", got)
	}
	c.Observe(tg, written(0), 0) // fresh: bursting
	want := []cgroup.IOLimit{{Device: vda, WriteBPS: 50 * mib, ReadBPS: 3 * mib}, {Device: cgroup.Device{Major: 8}, WriteBPS: 10 * mib}}
	if got := c.LimitsInForce(tg, plan); !slices.Equal(got, want) {
		t.Errorf("bursting: %+v, want %+v", got, want)
	}
	stricter := []cgroup.IOLimit{{Device: vda, WriteBPS: 1 * mib}}
	if got := c.LimitsInForce(tg, stricter); !slices.Equal(got, stricter) {
		t.Errorf("a stricter limit merged in: %+v, want it kept", got)
	}
	unthrottled := tg
	unthrottled.Lines = []Line{{Device: vda, Kind: WriteBPS, Spec: Spec{Sustained: 10 * mib, Credit: 100 * mib}}}
	c.Observe(unthrottled, written(0), tick)
	if got := c.LimitsInForce(unthrottled, plan); got[0].WriteBPS != 0 || got[0].ReadBPS != 3*mib {
		t.Errorf("unthrottled burst: %+v, want wbps lifted (0) and rbps kept", got)
	}
}

func TestControllerForgetsWhatNoLongerBursts(t *testing.T) {
	c := NewController(nil)
	c.Observe(target(true), written(0), 0)
	none := target(true)
	none.Lines = nil
	c.Observe(none, written(0), tick)
	if _, ok := c.InForce(wbps); ok {
		t.Error("a key the policy no longer bursts keeps its bucket")
	}
	c.Observe(target(true), written(0), tick)
	c.Retain(map[string]bool{"other": true})
	if c.Buckets() != 0 {
		t.Errorf("%d buckets after the container went", c.Buckets())
	}
}
