package cgroup

import (
	"errors"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestReadFileWholeAndMissing(t *testing.T) {
	dir := t.TempDir()
	// Larger than one read: a v1 stat file on a node with many disks.
	long := strings.Repeat("254:0 Read 1234567890\n", 1000)
	writeFake(t, dir, "blkio.throttle.io_service_bytes", long)
	got, err := ReadFile(dir, "blkio.throttle.io_service_bytes")
	if err != nil || got != long {
		t.Errorf("ReadFile(%d bytes) = %d bytes, %v", len(long), len(got), err)
	}
	writeFake(t, dir, "io.max", "")
	if got, err := ReadFile(dir, "io.max"); err != nil || got != "" {
		t.Errorf("ReadFile(empty) = %q, %v", got, err)
	}
	_, err = ReadFile(filepath.Join(dir, "gone"), "io.max")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "gone", "io.max")) {
		t.Errorf("ReadFile(missing) = %v, want ErrNotExist naming the file", err)
	}
}

// Files of every size around the stack buffer (512 bytes) and its first growth come
// back whole.
func TestReadFileAroundTheBufferSizes(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{1, 511, 512, 513, 4095, 4608, 4609, 9217} {
		want := strings.Repeat("x", size-1) + "\n"
		writeFake(t, dir, "io.stat", want)
		if got, err := ReadFile(dir, "io.stat"); err != nil || got != want {
			t.Errorf("ReadFile(%d bytes) = %d bytes, %v", size, len(got), err)
		}
	}
}

// A read of a one-line file allocates about its string and path, not a buffer of
// kilobytes: the reconcile pass reads every throttled cgroup's files each time.
func TestReadFileAllocatesLittle(t *testing.T) {
	dir := t.TempDir()
	writeFake(t, dir, "io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n")
	const reads = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range reads {
		if _, err := ReadFile(dir, "io.max"); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// The string and the path's copies; under -race the stack buffer may go to the
	// heap too (512 bytes). A 4 KB buffer per read is what this keeps out.
	if perRead := (after.TotalAlloc - before.TotalAlloc) / reads; perRead > 1024 {
		t.Errorf("ReadFile allocates %d bytes a read, want at most 1024", perRead)
	}
}
