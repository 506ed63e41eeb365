package cgroup

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countingIO counts the reads that reach the backend.
type countingIO struct {
	IO
	reads atomic.Int64
}

func (c *countingIO) Limits(dir string) ([]IOLimit, error) {
	c.reads.Add(1)
	return c.IO.Limits(dir)
}

// newWatchedV2 is a v2 cgroup directory with an io.max, watched.
func newWatchedV2(t *testing.T, ioMax string) (*LimitWatch, *countingIO, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pod1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "io.max", ioMax)
	backend := &countingIO{IO: ioV2{mount: filepath.Dir(dir)}}
	w, err := NewLimitWatch(backend, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, backend, dir
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readBPS(t *testing.T, w *LimitWatch, dir string) uint64 {
	t.Helper()
	limits, err := w.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 1 {
		t.Fatalf("limits %v, want one device", limits)
	}
	return limits[0].ReadBPS
}

// wantBPS fails the test unless Limits answers rbps=want for dir's one device.
func wantBPS(t *testing.T, w *LimitWatch, dir string, want uint64) {
	t.Helper()
	if got := readBPS(t, w, dir); got != want {
		t.Fatalf("rbps %d, want %d", got, want)
	}
}

func signalled(w *LimitWatch, within time.Duration) bool {
	select {
	case <-w.Changed():
		return true
	case <-time.After(within):
		return false
	}
}

func TestLimitWatchReadsAgainOnlyAfterAWrite(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	for range 3 {
		if got := readBPS(t, w, dir); got != 1000 {
			t.Fatalf("rbps %d, want 1000", got)
		}
	}
	wantReads(t, backend, 1)
	// Another file of the cgroup is not a limit: still no read.
	writeFile(t, dir, "cpu.max", "max 100000\n")
	readBPS(t, w, dir)
	if n := backend.reads.Load(); n != 1 {
		t.Fatalf("a write to cpu.max caused a read (%d reads)", n)
	}
	// A tenant lifts the limit: the very next Limits sees it, with no wait.
	writeFile(t, dir, "io.max", "8:0 rbps=max wbps=max riops=max wiops=max\n8:16 rbps=5 wbps=max riops=max wiops=max\n")
	limits, err := w.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 1 || limits[0].Device != (Device{Major: 8, Minor: 16}) || limits[0].ReadBPS != 5 {
		t.Fatalf("after the write: %v, want only 8:16 rbps=5", limits)
	}
	wantReads(t, backend, 2)
}

func TestLimitWatchSignalsAnotherWriter(t *testing.T) {
	w, _, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	writeFile(t, dir, "io.max", "8:0 rbps=max wbps=max riops=max wiops=max\n")
	if !signalled(w, 5*time.Second) {
		t.Fatal("a write to limits read back was not signalled")
	}
	// O_TRUNC and the write are two events: take a second signal if any.
	signalled(w, 100*time.Millisecond)
	// A second write before anyone read the first: signalled too.
	writeFile(t, dir, "io.max", "8:0 rbps=7 wbps=max riops=max wiops=max\n")
	if !signalled(w, 5*time.Second) {
		t.Fatal("a second write, before a read, was not signalled")
	}
	wantBPS(t, w, dir, 7)
}

func TestLimitWatchOwnWriteIsNotSignalled(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	w.Writing(dir)
	if err := Apply(dir, []Write{{File: "io.max", Value: "8:0 rbps=2000"}}); err != nil {
		t.Fatal(err)
	}
	w.Wrote(dir)
	if signalled(w, 200*time.Millisecond) {
		t.Fatal("criguard's own announced write was signalled")
	}
	// Nobody read the cgroup since criguard's write; a tenant's write after it is
	// signalled all the same.
	writeFile(t, dir, "io.max", "8:0 rbps=max wbps=max riops=max wiops=max\n")
	if !signalled(w, 5*time.Second) {
		t.Fatal("a tenant's write after criguard's was not signalled")
	}
	w.Writing(dir)
	if err := Apply(dir, []Write{{File: "io.max", Value: "8:0 rbps=2000"}}); err != nil {
		t.Fatal(err)
	}
	w.Wrote(dir)
	// A regular file takes the line as written; the backend parses it.
	wantBPS(t, w, dir, 2000)
	wantReads(t, backend, 2)
}

func TestLimitWatchReadsAgainWhenOld(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	w.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w.maxAge = time.Minute
	readBPS(t, w, dir)
	readBPS(t, w, dir)
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	readBPS(t, w, dir)
	wantReads(t, backend, 2)
}

func TestLimitWatchDirectoryRecreated(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	// The cgroup is removed and another made at the same path (a unit restarted):
	// its limits are read, not the old one's.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Created without a write to a watched directory: only IN_IGNORED says so.
	if err := os.WriteFile(filepath.Join(dir, "io.max"), []byte("8:0 rbps=3 wbps=max riops=max wiops=max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantBPS(t, w, dir, 3)
	readBPS(t, w, dir)
	wantReads(t, backend, 2)
}

func TestLimitWatchV1WatchesTheFourThrottleFiles(t *testing.T) {
	dir := t.TempDir()
	for _, key := range blkioThrottleKeys {
		writeFile(t, dir, key.file, "")
	}
	writeFile(t, dir, "blkio.throttle.read_bps_device", "8:0 1000\n")
	backend := &countingIO{IO: blkioV1{mount: filepath.Dir(dir)}}
	w, err := NewLimitWatch(backend, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	readBPS(t, w, dir)
	writeFile(t, dir, "blkio.weight", "500\n")
	readBPS(t, w, dir)
	writeFile(t, dir, "blkio.throttle.write_iops_device", "8:0 9\n")
	limits, err := w.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 1 || limits[0].WriteIOPS != 9 || limits[0].ReadBPS != 1000 {
		t.Fatalf("limits %v, want 8:0 rbps 1000 wiops 9", limits)
	}
	wantReads(t, backend, 2)
}

func TestLimitWatchOverflowDropsEveryRead(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	event := make([]byte, unix.SizeofInotifyEvent)
	binary.NativeEndian.PutUint32(event[0:], ^uint32(0)) // wd -1
	binary.NativeEndian.PutUint32(event[4:], unix.IN_Q_OVERFLOW)
	w.mu.Lock()
	changed := w.handle(event)
	w.mu.Unlock()
	if !changed {
		t.Fatal("an overflow did not count as a change")
	}
	readBPS(t, w, dir)
	wantReads(t, backend, 2)
}

func TestLimitWatchAfterClose(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantBPS(t, w, dir, 1000)
	wantReads(t, backend, 2)
}

func TestLimitWatchConcurrentReadersAndWriters(t *testing.T) {
	w, _, dir := newWatchedV2(t, "8:0 rbps=1 wbps=max riops=max wiops=max\n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, err := w.Limits(dir); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			writeFile(t, dir, "io.max", "8:0 rbps=1 wbps=max riops=max wiops=max\n")
		}
	})
	wg.Wait()
	writeFile(t, dir, "io.max", "8:0 rbps=42 wbps=max riops=max wiops=max\n")
	wantBPS(t, w, dir, 42)
}

func TestLimitWatchSameCgroupUnderTwoPaths(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	link := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	readBPS(t, w, dir)
	readBPS(t, w, link)
	readBPS(t, w, link)
	// The second path shares the first's watch: it is read every time rather than
	// kept under a watch that would forget it with the first.
	wantReads(t, backend, 3)
	writeFile(t, dir, "io.max", "8:0 rbps=9 wbps=max riops=max wiops=max\n")
	if got, got2 := readBPS(t, w, dir), readBPS(t, w, link); got != 9 || got2 != 9 {
		t.Fatalf("rbps %d and %d after the write, want 9 through both paths", got, got2)
	}
}

func TestLimitWatchPastTheWatchLimit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pod1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "io.max", "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	backend := &countingIO{IO: ioV2{mount: filepath.Dir(dir)}}
	var told []string
	w, err := NewLimitWatch(backend, time.Hour, func(dir string, err error) {
		told = append(told, dir+": "+err.Error())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.addWatch = func(int, string, uint32) (int, error) { return 0, unix.ENOSPC }
	readBPS(t, w, dir)
	readBPS(t, w, dir)
	// Unwatched: read every time, and said so each time it was tried.
	wantReads(t, backend, 2)
	if len(told) != 2 || !strings.Contains(told[0], "no space left on device") {
		t.Fatalf("told %q, want the error twice", told)
	}
	if _, _, watched := w.Counts(); watched != 0 {
		t.Fatalf("%d watched, want 0", watched)
	}
}

// wantReads fails the test unless the backend was read want times.
func wantReads(t *testing.T, backend *countingIO, want int64) {
	t.Helper()
	if n := backend.reads.Load(); n != want {
		t.Fatalf("the files were read %d times, want %d", n, want)
	}
}

// cgroupfs sends no IN_IGNORED when a cgroup is removed, and the old watch lives on,
// pinning the removed directory. A rename away does the same to a tmpfs directory.
func removeKeepingTheWatch(t *testing.T, dir string) {
	t.Helper()
	if err := os.Rename(dir, dir+".removed"); err != nil {
		t.Fatal(err)
	}
}

func TestLimitWatchDirectoryReplacedWithoutIgnored(t *testing.T) {
	w, backend, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	removeKeepingTheWatch(t, dir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The new cgroup's limits, written where the old watch cannot see them.
	writeFile(t, dir, "io.max", "8:0 rbps=3 wbps=max riops=max wiops=max\n")
	wantBPS(t, w, dir, 3)
	wantBPS(t, w, dir, 3)
	wantReads(t, backend, 2)
	// The new directory is the one watched now.
	writeFile(t, dir, "io.max", "8:0 rbps=5 wbps=max riops=max wiops=max\n")
	if !signalled(w, 5*time.Second) {
		t.Fatal("a write to the new directory was not signalled")
	}
	wantBPS(t, w, dir, 5)
	if _, _, watched := w.Counts(); watched != 1 {
		t.Fatalf("%d watched, want 1", watched)
	}
}

func TestLimitWatchRemovedDirectoryIsAnError(t *testing.T) {
	w, _, dir := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	readBPS(t, w, dir)
	removeKeepingTheWatch(t, dir)
	if limits, err := w.Limits(dir); err == nil {
		t.Fatalf("limits of a removed cgroup = %v from memory, want the backend's error", limits)
	}
	if _, _, watched := w.Counts(); watched != 0 {
		t.Fatalf("%d watched, want 0", watched)
	}
}

func TestLimitWatchForgetsGoneCgroups(t *testing.T) {
	w, backend, gone := newWatchedV2(t, "8:0 rbps=1000 wbps=max riops=max wiops=max\n")
	kept := filepath.Join(filepath.Dir(gone), "pod2")
	if err := os.Mkdir(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, kept, "io.max", "8:0 rbps=7 wbps=max riops=max wiops=max\n")
	readBPS(t, w, gone)
	readBPS(t, w, kept)
	removeKeepingTheWatch(t, gone)
	w.Forget(func(dir string) bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
	if _, _, watched := w.Counts(); watched != 1 {
		t.Fatalf("%d watched after Forget, want 1 (the cgroup still there)", watched)
	}
	// The removed cgroup's watch is gone from the kernel too: a write to what it
	// watched is not signalled.
	writeFile(t, gone+".removed", "io.max", "8:0 rbps=9 wbps=max riops=max wiops=max\n")
	if signalled(w, 200*time.Millisecond) {
		t.Fatal("a write to a forgotten cgroup was signalled")
	}
	wantBPS(t, w, kept, 7)
	wantReads(t, backend, 2)
}
