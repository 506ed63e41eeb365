package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/criguard/criguard/internal/atomicfile"
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
// are followed. With WithLastGood, it keeps a copy of each policy that loads, and runs
// that copy when it starts on a file it refuses.
type Watcher struct {
	path     string
	onReload func(ReloadResult)
	current  atomic.Pointer[Policy]
	requests chan struct{}

	// lastGood is the copy of the last policy that loaded; "" keeps none.
	lastGood string
	log      *slog.Logger

	// debounce lets an editor's burst of events (truncate, write, chmod) settle.
	debounce time.Duration
	// pollInterval is how often a missing directory is looked for again.
	pollInterval time.Duration
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithLastGood keeps a copy of every policy that loads at path (in criguard's state
// dir), written with fsync, and runs it when the watcher starts on a file it refuses.
func WithLastGood(path string) WatcherOption {
	return func(w *Watcher) { w.lastGood = path }
}

// WithLogger logs what the caller cannot act on: a last good copy that cannot be kept.
func WithLogger(log *slog.Logger) WatcherOption {
	return func(w *Watcher) { w.log = log }
}

// StartError is NewWatcher's error for a policy file that exists but is refused: it
// is broken, or empty (only white space: a save cut short, not a wish for no rules,
// which a comment-only file expresses). Either way the watcher starts on the last good
// copy if that one loads, is not empty and can throttle something (it has a rule, or
// annotations enabled), or else hands off (Current nil: forward, write nothing, reset
// nothing). Never on an empty rule set, which would lift every limit criguard had
// written.
type StartError struct {
	Path string
	Err  error // why the file was refused
	// LastGood is the copy now in force; "" when hands off.
	LastGood string
	// LastGoodErr says why no copy is in force (nil with no WithLastGood).
	LastGoodErr error
}

func (e *StartError) Error() string {
	if e.LastGood != "" {
		return fmt.Sprintf("policy %s refused; running the last good policy (%s): %v", e.Path, e.LastGood, e.Err)
	}
	return fmt.Sprintf("policy %s refused and no last good policy; hands off, nothing is throttled or reset: %v", e.Path, e.Err)
}

// Unwrap returns why the file was refused.
func (e *StartError) Unwrap() error { return e.Err }

// NewWatcher loads path once. A missing file is not an error: Current is nil (the
// proxy forwards without throttling) until the file appears. A file that exists but
// is refused returns a *StartError with a watcher that is usable all the same, running
// the last good copy or nothing until the file is fixed: the caller chooses between
// refusing to start and running so. onReload may be nil.
func NewWatcher(path string, onReload func(ReloadResult), opts ...WatcherOption) (*Watcher, error) {
	w := &Watcher{
		path:         path,
		onReload:     onReload,
		requests:     make(chan struct{}, 1),
		debounce:     100 * time.Millisecond,
		pollInterval: 2 * time.Second,
	}
	for _, opt := range opts {
		opt(w)
	}
	p, err := Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return w, nil
	case err != nil:
		refused := &StartError{Path: path, Err: err}
		if w.lastGood == "" {
			return w, refused
		}
		last, lastErr := Load(w.lastGood)
		if lastErr == nil && last.throttlesNothing() {
			// Running it would only reset what criguard wrote; hands off keeps it.
			lastErr = fmt.Errorf("last good policy %s has no rules and no annotations: hands off instead", w.lastGood)
		}
		if lastErr != nil {
			refused.LastGoodErr = lastErr
			return w, refused
		}
		w.current.Store(last)
		refused.LastGood = w.lastGood
		return w, refused
	}
	w.current.Store(p)
	w.keep(p)
	return w, nil
}

// throttlesNothing reports whether p can give no workload a limit.
func (p *Policy) throttlesNothing() bool {
	return len(p.Rules) == 0 && !p.Annotations.Enabled
}

// keep writes p as the last good copy, unless it is already that copy.
func (w *Watcher) keep(p *Policy) {
	if w.lastGood == "" || p == nil || len(bytes.TrimSpace(p.Source)) == 0 {
		return
	}
	if old, err := os.ReadFile(w.lastGood); err == nil && bytes.Equal(old, p.Source) {
		return
	}
	if err := atomicfile.Write(w.lastGood, p.Source); err != nil && w.log != nil {
		w.log.Error("cannot keep the last good policy; a restart on a broken file would run hands off", "path", w.lastGood, "err", err)
	}
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

	// The poll looks for a missing directory; while the directory is watched it
	// stops, so that an idle watcher never wakes (each wake-up of an otherwise idle
	// daemon costs a few hundred µs of CPU, issue 20).
	poll := time.NewTicker(w.pollInterval)
	defer poll.Stop()
	if watching {
		poll.Stop()
	}
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
			if watching {
				poll.Stop()
			}
		case event, ok := <-notify.Events:
			if !ok {
				return nil
			}
			if event.Name == dir && event.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the directory went away; poll until it is back
				poll.Reset(w.pollInterval)
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

// reload loads the file; a bad, emptied or removed file leaves the policy in force.
func (w *Watcher) reload() ReloadResult {
	old := w.current.Load()
	p, err := Load(w.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && old != nil {
			err = fmt.Errorf("policy %s: %w: %w", w.path, ErrPolicyRemoved, err)
		}
		return ReloadResult{Policy: old, Err: err}
	}
	w.current.Store(p)
	w.keep(p)
	return ReloadResult{Policy: p, Changed: !reflect.DeepEqual(old, p)}
}
