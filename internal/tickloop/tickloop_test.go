package tickloop

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeLoop counts ticks and is idle while the test says so.
type fakeLoop struct {
	mu      sync.Mutex
	ticks   int
	idle    bool
	stopped int
}

func (f *fakeLoop) Tick(context.Context, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ticks++
}

func (f *fakeLoop) Idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.idle
}

func (f *fakeLoop) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped++
}

func (f *fakeLoop) setIdle(idle bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idle = idle
}

func (f *fakeLoop) counts() (ticks, stopped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ticks, f.stopped
}

func start(t *testing.T, wake <-chan struct{}, loop *fakeLoop) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, Loop{Interval: time.Millisecond, Wake: wake, Tick: loop.Tick, Idle: loop.Idle, Stop: loop.Stop})
		close(done)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitTicks waits until the loop ticked at least n times.
func waitTicks(t *testing.T, loop *fakeLoop, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ticks, _ := loop.counts(); ticks >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d ticks within 5 s", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// An idle loop ticks once and then not at all until woken; woken, it ticks at once
// and keeps ticking while busy; idle again, it sleeps again.
func TestIdleLoopSleepsUntilWoken(t *testing.T) {
	loop := &fakeLoop{idle: true}
	wake := make(chan struct{}, 1)
	stop := start(t, wake, loop)
	waitTicks(t, loop, 1)
	time.Sleep(50 * time.Millisecond) // 50 intervals
	if ticks, _ := loop.counts(); ticks != 1 {
		t.Fatalf("%d ticks while idle, want only the first", ticks)
	}

	loop.setIdle(false)
	wake <- struct{}{}
	waitTicks(t, loop, 10)

	loop.setIdle(true)
	var asleep int
	for deadline := time.Now().Add(5 * time.Second); ; {
		before, _ := loop.counts()
		time.Sleep(50 * time.Millisecond)
		if after, _ := loop.counts(); after == before {
			asleep = after
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop went on ticking once idle")
		}
	}
	stop()
	if ticks, stopped := loop.counts(); ticks != asleep || stopped != 0 {
		t.Errorf("after stopping asleep: %d ticks (want %d), Stop called %d times (want 0: nothing to save)", ticks, asleep, stopped)
	}
}

// Without a wake channel the loop ticks on, idle or not, and Stop runs at the end.
func TestWithoutWakeTicksOn(t *testing.T) {
	loop := &fakeLoop{idle: true}
	stop := start(t, nil, loop)
	waitTicks(t, loop, 10)
	stop()
	if _, stopped := loop.counts(); stopped != 1 {
		t.Errorf("Stop called %d times, want once", stopped)
	}
}
