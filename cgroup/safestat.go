package cgroup

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A stat on a hung filesystem (a hard-mounted NFS whose server is gone, a FUSE
// daemon that never answers) sleeps in the kernel where no signal or context
// reaches it. Paths are therefore stat'ed by a worker that the caller may leave
// behind at its deadline; the worker ends if the filesystem ever answers.

// maxPendingStats bounds the workers left behind: each holds an OS thread.
const maxPendingStats = 32

// defaultStatTimeout bounds a stat whose caller has no deadline of its own (a
// policy device path, `check --host`): the default --apply-timeout.
const defaultStatTimeout = 2 * time.Second

type statResult struct {
	st  unix.Stat_t
	err error
}

// pendingStat is one stat in flight; done is closed once result is set.
type pendingStat struct {
	started time.Time
	done    chan struct{}
	result  statResult
}

// statWorkers are the stats in flight, by path: a caller asking again for a path
// whose stat has not answered waits on the same one instead of leaving another
// thread stuck. Process-wide, as the threads they hold are.
var statWorkers = struct {
	mu      sync.Mutex
	pending map[string]*pendingStat
}{pending: map[string]*pendingStat{}}

// statContext is stat(2) of path bounded by ctx (or defaultStatTimeout when ctx
// has no deadline). A filesystem that does not answer in time is
// ErrFilesystemHung; the stat goes on in the background and is shared by later
// calls for the same path until it answers.
func statContext(ctx context.Context, path string) (unix.Stat_t, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStatTimeout)
		defer cancel()
	}
	statWorkers.mu.Lock()
	p, ok := statWorkers.pending[path]
	if !ok {
		if len(statWorkers.pending) >= maxPendingStats {
			statWorkers.mu.Unlock()
			return unix.Stat_t{}, fmt.Errorf("%w: stat %s not started: %d stats are still waiting on their filesystems",
				ErrFilesystemHung, path, maxPendingStats)
		}
		p = &pendingStat{started: time.Now(), done: make(chan struct{})}
		statWorkers.pending[path] = p
		go p.run(path)
	}
	statWorkers.mu.Unlock()
	select {
	case <-p.done:
		return p.result.st, p.result.err
	case <-ctx.Done():
		return unix.Stat_t{}, fmt.Errorf("%w: stat %s has not answered for %s", ErrFilesystemHung, path,
			time.Since(p.started).Round(time.Millisecond))
	}
}

func (p *pendingStat) run(path string) {
	err := unix.Stat(path, &p.result.st)
	p.result.err = err
	statWorkers.mu.Lock()
	delete(statWorkers.pending, path)
	statWorkers.mu.Unlock()
	close(p.done)
}

// pendingStats is how many stats are in flight, for tests.
func pendingStats() int {
	statWorkers.mu.Lock()
	defer statWorkers.mu.Unlock()
	return len(statWorkers.pending)
}
