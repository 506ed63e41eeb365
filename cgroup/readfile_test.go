package cgroup

import (
	"errors"
	"io/fs"
	"path/filepath"
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
