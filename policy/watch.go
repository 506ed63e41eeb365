package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ReloadResult is the outcome of one reload. When Err is set, Policy is still the one
// in force (the last good one, or nil) and Changed is false.
type ReloadResult struct {
	Policy  *Policy
	Err     error
	Changed bool // the policy in force differs from the one before
}

// Watcher keeps the last good policy of one file and reloads it when the file changes
// or Reload is called. It watches the file's directory, not the file, so that editors
// that write a new file and rename it over the old one (vim, ConfigMap symlink swaps)
// are followed.
type Watcher struct {
	path     string
	onReload func(ReloadResult)
	current  atomic.Pointer[Policy]
	requests chan struct{}

	// debounce lets an editor's burst of events (truncate, write, chmod) settle.
	debounce time.Duration
	// pollInterval is how often a missing directory is looked for again.
	pollInterval time.Duration
}

// NewWatcher loads path once. A missing file is not an error: Current is nil (the
// proxy forwards without throttling) until the file appears. A file that exists but
// cannot be read or is invalid is returned as the error, with a watcher that is
// usable all the same (Current nil until the file is fixed): the caller chooses
// between refusing to start and running without a policy. onReload may be nil.
func NewWatcher(path string, onReload func(ReloadResult)) (*Watcher, error) {
	w := &Watcher{
		path:         path,
		onReload:     onReload,
		requests:     make(chan struct{}, 1),
		debounce:     100 * time.Millisecond,
		pollInterval: 2 * time.Second,
	}
	p, err := Load(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return w, err
	}
	w.current.Store(p)
	return w, nil
}

// UseFallback puts p in force while no policy has loaded from the file: the last
// good policy, kept from an earlier run, when the file is broken at start.
func (w *Watcher) UseFallback(p *Policy) bool {
	return w.current.CompareAndSwap(nil, p)
}

// Current is the policy in force: the last one that loaded without errors, or nil.
func (w *Watcher) Current() *Policy { return w.current.Load() }

// Reload asks Run to reload now (SIGHUP). It never blocks; requests made while one is
// pending are merged.
func (w *Watcher) Reload() {
	select {
	case w.requests <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends, reporting each reload to the callback from this
// goroutine. It returns nil when ctx ends, or an error if the watch cannot be set up.
func (w *Watcher) Run(ctx context.Context) error {
	notify, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy %s: %w", w.path, err)
	}
	defer notify.Close()

	dir, base := filepath.Dir(w.path), filepath.Base(w.path)
	watching := false
	// startWatch adds the directory and catches up with changes made before it.
	startWatch := func() error {
		if err := notify.Add(dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("watch policy directory %s: %w", dir, err)
		}
		watching = true
		if result := w.reload(); result.Changed || (result.Err != nil && w.Current() != nil) {
			w.report(result)
		}
		return nil
	}
	if err := startWatch(); err != nil {
		return err
	}

	poll := time.NewTicker(w.pollInterval)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.requests:
			w.report(w.reload())
		case <-settle.C:
			w.report(w.reload())
		case <-poll.C:
			if !watching {
				if err := startWatch(); err != nil {
					return err
				}
			}
		case event, ok := <-notify.Events:
			if !ok {
				return nil
			}
			if event.Name == dir && event.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the directory went away; poll until it is back
				continue
			}
			// "..data" is the symlink a Kubernetes ConfigMap volume swaps on update.
			if name := filepath.Base(event.Name); name == base || name == "..data" {
				settle.Reset(w.debounce)
			}
		case _, ok := <-notify.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: reload to be sure.
			settle.Reset(w.debounce)
		}
	}
}

func (w *Watcher) report(result ReloadResult) {
	if w.onReload != nil {
		w.onReload(result)
	}
}

// reload loads the file; a bad or removed file leaves the last good policy in force.
func (w *Watcher) reload() ReloadResult {
	old := w.current.Load()
	p, src, err := load(w.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && old != nil {
			err = fmt.Errorf("policy %s: %w: %w", w.path, ErrPolicyRemoved, err)
		}
		return ReloadResult{Policy: old, Err: err}
	}
	if old != nil && len(bytes.TrimSpace(src)) == 0 {
		return ReloadResult{Policy: old, Err: fmt.Errorf("policy %s: %w", w.path, ErrPolicyEmpty)}
	}
	w.current.Store(p)
	return ReloadResult{Policy: p, Changed: !reflect.DeepEqual(old, p)}
}
