package criservice

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type countingPasses struct {
	mu               sync.Mutex
	passes, rechecks int
	fail             bool
	conflicted       bool
	passed           chan struct{}
	recorded         chan struct{}
}

func (p *countingPasses) Conflicted() (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conflicted, p.recorded
}

func (p *countingPasses) setConflicted(c bool) {
	p.mu.Lock()
	p.conflicted = c
	p.mu.Unlock()
}

func (p *countingPasses) Reconcile(context.Context) (ReconcileResult, error) {
	p.mu.Lock()
	p.passes++
	fail := p.fail
	p.mu.Unlock()
	p.passed <- struct{}{}
	if fail {
		return ReconcileResult{}, errors.New("runtime down")
	}
	return ReconcileResult{Fixed: 1}, nil
}

func (p *countingPasses) RecheckConflicted(context.Context) {
	p.mu.Lock()
	p.rechecks++
	p.mu.Unlock()
}

func (p *countingPasses) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passes, p.rechecks
}

// A pass runs at start and on each trigger, a failed pass is retried at the next
// one, the recheck runs on its own cadence only while a cgroup is conflicted, and
// Run returns when ctx ends.
func TestReconcilerRunsOnStartTriggerAndRecheck(t *testing.T) {
	p := &countingPasses{passed: make(chan struct{}), recorded: make(chan struct{}, 1), fail: true}
	r := &Reconciler{Passes: p, Interval: time.Hour, Recheck: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	trigger := make(chan struct{})
	done := make(chan struct{})
	go func() { r.Run(ctx, trigger); close(done) }()

	<-p.passed // at start, failing
	p.mu.Lock()
	p.fail = false
	p.mu.Unlock()
	trigger <- struct{}{}
	<-p.passed // the trigger's pass
	time.Sleep(50 * time.Millisecond)
	if _, rechecks := p.counts(); rechecks != 0 {
		t.Fatalf("%d rechecks with nothing conflicted, want the loop asleep", rechecks)
	}
	p.setConflicted(true)
	p.recorded <- struct{}{}
	deadline := time.After(5 * time.Second)
	for {
		if _, rechecks := p.counts(); rechecks >= 2 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the conflict recheck never ran")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if passes, _ := p.counts(); passes != 2 {
		t.Errorf("passes = %d, want 2 (start, trigger): the hour interval never fired", passes)
	}
}

// A write by another to limits read back runs a pass, but never sooner than
// ChangedGap after the start of the one before, however many writes come.
func TestReconcilerPassOnChangedLimitsKeepsItsGap(t *testing.T) {
	p := &countingPasses{passed: make(chan struct{}, 10), recorded: make(chan struct{}, 1)}
	changed := make(chan struct{}, 1)
	r := &Reconciler{Passes: p, Interval: time.Hour, Changed: changed, ChangedGap: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, nil)

	<-p.passed // at start
	first := time.Now()
	changed <- struct{}{}
	select {
	case <-p.passed:
	case <-time.After(5 * time.Second):
		t.Fatal("no pass after limits were changed")
	}
	if since := time.Since(first); since < 250*time.Millisecond {
		t.Fatalf("the pass for the change ran %v after the one before, want at least the 300ms gap", since)
	}
	second := time.Now()
	changed <- struct{}{}
	<-p.passed
	if since := time.Since(second); since < 250*time.Millisecond {
		t.Fatalf("the next pass ran %v after the one before, want at least the gap", since)
	}
	if passes, _ := p.counts(); passes != 3 {
		t.Fatalf("%d passes, want 3", passes)
	}
}
