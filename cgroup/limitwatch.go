package cgroup

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LimitWatch is an IO whose Limits reads a cgroup's limit files once and then
// again only after something wrote to them, as inotify reports, or once the read
// is MaxAge old: a reconcile pass over an idle node reads back next to nothing.
// Every other method is the backend's.
//
// A write to a cgroup file queues its inotify event before the write returns, and
// Limits takes every queued event before it answers from memory: it never answers
// with limits older than a write that had completed when it was called. fsnotify
// delivers events from a goroutine of its own, later, so it cannot promise that.
//
// A write by anyone but criguard (which brackets its own with Writing and Wrote)
// to a watched cgroup's limits signals Changed, so that they are read again at
// once rather than at the next pass.
//
// A cgroup removed from cgroupfs keeps its watch: kernfs sends no IN_IGNORED, and the
// watch pins the removed directory's inode. So every answer from memory first checks
// that the path still names the directory watched (a cgroup made again at the same
// path is a new directory, which the old watch does not see), and Forget drops the
// watches of cgroups gone.
type LimitWatch struct {
	IO
	files  map[string]bool // the backend's limit files: io.max, or v1's four
	maxAge time.Duration
	now    func() time.Time
	// unwatched is told of a cgroup that cannot be watched (read every time).
	unwatched func(dir string, err error)
	addWatch  func(fd int, dir string, mask uint32) (int, error) // inotify_add_watch(2); tests fail it

	file    *os.File        // the inotify instance, non-blocking, in the runtime's poller
	raw     syscall.RawConn // file's descriptor, kept open while in use
	changed chan struct{}

	fromMemory, fromFiles atomic.Uint64 // Limits answers, by where they came from

	mu      sync.Mutex
	closed  bool
	byDir   map[string]*watchedDir
	byWatch map[int32]*watchedDir
	buf     []byte
}

type watchedDir struct {
	dir    string
	id     dirID // the directory watched, as stat named it before the watch was added
	wd     int32
	limits []IOLimit
	readAt time.Time // zero: not read since the last write
	gen    uint64    // counts writes seen, so that a read raced by one is not kept
	// writing is set while criguard writes the limits: their events are its own.
	writing bool
}

// dirID tells one directory from another made later at the same path.
type dirID struct{ dev, ino uint64 }

// statDir is the identity of the directory at dir now.
func statDir(dir string) (dirID, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return dirID{}, err
	}
	return dirID{dev: st.Dev, ino: st.Ino}, nil
}

// limitFiles are the files the backend of a cgroup version reads limits from.
func limitFiles(version int) []string {
	if version == 2 {
		return []string{ioMaxFile}
	}
	files := make([]string, len(blkioThrottleKeys))
	for i, key := range blkioThrottleKeys {
		files[i] = key.file
	}
	return files
}

// NewLimitWatch watches the limit files of the cgroups backend's Limits reads;
// unwatched, if set, is told of each attempt to watch one that failed (such a
// cgroup is read every time). Close it to release the inotify instance.
func NewLimitWatch(backend IO, maxAge time.Duration, unwatched func(dir string, err error)) (*LimitWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cgroup: inotify: %w", err)
	}
	w := &LimitWatch{
		IO:        backend,
		files:     map[string]bool{},
		maxAge:    maxAge,
		now:       time.Now,
		unwatched: unwatched,
		addWatch:  unix.InotifyAddWatch,
		file:      os.NewFile(uintptr(fd), "inotify"),
		changed:   make(chan struct{}, 1),
		byDir:     map[string]*watchedDir{},
		byWatch:   map[int32]*watchedDir{},
		buf:       make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1)),
	}
	for _, f := range limitFiles(backend.Version()) {
		w.files[f] = true
	}
	if w.raw, err = w.file.SyscallConn(); err != nil {
		w.file.Close()
		return nil, fmt.Errorf("cgroup: inotify: %w", err)
	}
	go w.listen()
	return w, nil
}

// Changed is signalled when a watched cgroup's limits were written by someone
// else (or the kernel dropped events, so that any may have been).
func (w *LimitWatch) Changed() <-chan struct{} { return w.changed }

// Limits implements IO.
func (w *LimitWatch) Limits(dir string) ([]IOLimit, error) {
	// Before the watch is looked at: a directory made after this stat differs from
	// the one watched at the next call, and is read then.
	id, statErr := statDir(dir)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.fromFiles.Add(1)
		return w.IO.Limits(dir)
	}
	w.drainLocked()
	d := w.byDir[dir]
	if d != nil && (statErr != nil || d.id != id) {
		w.forgetLocked(d) // removed, or another directory now: its watch sees nothing of this one
		d = nil
	}
	if statErr != nil {
		w.mu.Unlock()
		w.fromFiles.Add(1)
		return w.IO.Limits(dir) // the backend says what is wrong with dir
	}
	if d != nil && !d.readAt.IsZero() && w.now().Sub(d.readAt) < w.maxAge {
		limits := slices.Clone(d.limits)
		w.mu.Unlock()
		w.fromMemory.Add(1)
		return limits, nil
	}
	if d == nil {
		// Watched before the read: a write after the read is always seen.
		d = w.watchLocked(dir, id)
	}
	var gen uint64
	if d != nil {
		gen = d.gen
	}
	w.mu.Unlock()

	w.fromFiles.Add(1)
	limits, err := w.IO.Limits(dir)
	if err != nil || d == nil {
		return limits, err
	}
	w.mu.Lock()
	if d.gen == gen && w.byDir[dir] == d {
		d.limits, d.readAt = slices.Clone(limits), w.now()
	}
	w.mu.Unlock()
	return limits, nil
}

// Counts are the Limits answered from memory and from the files, and the cgroups
// watched now.
func (w *LimitWatch) Counts() (fromMemory, fromFiles uint64, watched int) {
	w.mu.Lock()
	watched = len(w.byDir)
	w.mu.Unlock()
	return w.fromMemory.Load(), w.fromFiles.Load(), watched
}

// Writing tells the watch that criguard is about to write dir's limits, and Wrote
// that it is done: the read kept is dropped, and the events of the writes between
// the two do not signal Changed. Every event of a write is queued before the write
// returns, so Wrote takes them all; another's write in between is read at the next
// pass, like any write when nothing is watched.
func (w *LimitWatch) Writing(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.byDir[dir]; d != nil {
		d.writing = true
		d.invalidate()
	}
}

// Wrote ends what Writing began.
func (w *LimitWatch) Wrote(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.drainLocked()
	}
	if d := w.byDir[dir]; d != nil {
		d.writing = false
	}
}

// Close releases the inotify instance; Limits reads every time after it.
func (w *LimitWatch) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	// Not under mu: closing waits for listen's read, which takes mu.
	return w.file.Close()
}

// Forget drops the watches of the cgroups gone says were removed, and what was read
// of them (a pass's work: cgroupfs never says that a watched cgroup went).
func (w *LimitWatch) Forget(gone func(dir string) bool) {
	w.mu.Lock()
	watched := make([]*watchedDir, 0, len(w.byDir))
	for _, d := range w.byDir {
		watched = append(watched, d)
	}
	w.mu.Unlock()
	var drop []*watchedDir
	for _, d := range watched { // not under mu: gone looks at the filesystem
		if gone(d.dir) {
			drop = append(drop, d)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range drop {
		if !w.closed && w.byDir[d.dir] == d {
			w.forgetLocked(d)
		}
	}
}

// Drop forgets dir's watch and what was read of it: its cgroup was removed.
func (w *LimitWatch) Drop(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.byDir[dir]; d != nil && !w.closed {
		w.forgetLocked(d)
	}
}

// forgetLocked removes d's watch; its IN_IGNORED, if the kernel sends one, finds
// nothing.
func (w *LimitWatch) forgetLocked(d *watchedDir) {
	_ = w.control(func(fd int) error {
		_, err := unix.InotifyRmWatch(fd, uint32(d.wd))
		return err
	})
	delete(w.byWatch, d.wd)
	delete(w.byDir, d.dir)
}

// watchLocked adds dir's watch, dir being the directory id; nil when it cannot be
// watched (then every Limits reads it), e.g. past fs.inotify.max_user_watches.
func (w *LimitWatch) watchLocked(dir string, id dirID) *watchedDir {
	var wd int
	err := w.control(func(fd int) (err error) {
		wd, err = w.addWatch(fd, dir, unix.IN_MODIFY|unix.IN_ONLYDIR)
		return err
	})
	if err != nil {
		if w.unwatched != nil {
			w.unwatched(dir, err)
		}
		return nil
	}
	if _, seen := w.byWatch[int32(wd)]; seen {
		return nil // the same cgroup under another path: read it each time
	}
	d := &watchedDir{dir: dir, id: id, wd: int32(wd)}
	w.byDir[dir], w.byWatch[d.wd] = d, d
	return d
}

// control runs f on the inotify descriptor, kept open meanwhile.
func (w *LimitWatch) control(f func(fd int) error) error {
	var ferr error
	if err := w.raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// listen takes events as they come, so that a write to limits read back is
// signalled without waiting for the next Limits.
func (w *LimitWatch) listen() {
	for {
		err := w.raw.Read(func(uintptr) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.closed || w.drainLocked()
		})
		if err != nil {
			return // closed
		}
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return
		}
	}
}

// drainLocked takes every queued event; false when there was none.
func (w *LimitWatch) drainLocked() bool {
	took, changed := false, false
	for {
		var n int
		err := w.control(func(fd int) (err error) {
			n, err = unix.Read(fd, w.buf)
			return err
		})
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break // EAGAIN: the queue is empty
		}
		took = true
		if w.handle(w.buf[:n]) {
			changed = true
		}
	}
	if changed {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	return took
}

// handle applies a buffer of inotify events; true when another than criguard
// wrote a watched cgroup's limits.
func (w *LimitWatch) handle(events []byte) bool {
	changed := false
	for len(events) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(events[0:]))
		mask := binary.NativeEndian.Uint32(events[4:])
		nameLen := int(binary.NativeEndian.Uint32(events[12:]))
		end := min(unix.SizeofInotifyEvent+nameLen, len(events))
		name := bytes.TrimRight(events[unix.SizeofInotifyEvent:end], "\x00")
		events = events[end:]
		switch d := w.byWatch[wd]; {
		case mask&unix.IN_Q_OVERFLOW != 0:
			// Events were lost: any cgroup may have been written.
			for _, d := range w.byDir {
				d.invalidate()
			}
			changed = true
		case d == nil:
		case mask&unix.IN_IGNORED != 0:
			// The directory is gone (or its watch removed): forget it.
			delete(w.byWatch, wd)
			if w.byDir[d.dir] == d {
				delete(w.byDir, d.dir)
			}
		case mask&unix.IN_MODIFY != 0 && w.files[string(name)]:
			d.invalidate()
			changed = changed || !d.writing
		}
	}
	return changed
}

// invalidate drops d's read.
func (d *watchedDir) invalidate() {
	d.gen++
	d.readAt = time.Time{}
}
