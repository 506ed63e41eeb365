package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// hungFS is a FUSE filesystem whose lookups do not answer until released: what a
// hard-mounted NFS volume looks like once its server is gone.
type hungFS struct {
	fs.Inode
	lookups atomic.Int64
	release chan struct{}
	once    sync.Once
}

// answer lets every lookup, pending or to come, fail with ENOENT.
func (h *hungFS) answer() { h.once.Do(func() { close(h.release) }) }

var _ fs.NodeLookuper = (*hungFS)(nil)

// Lookup ignores ctx on purpose: a dead server answers no interrupt either.
func (h *hungFS) Lookup(_ context.Context, _ string, _ *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h.lookups.Add(1)
	<-h.release
	return nil, syscall.ENOENT
}

// mountHungFS mounts a hungFS (it needs root and /dev/fuse) and releases and
// unmounts it when the test ends.
func mountHungFS(t *testing.T) (string, *hungFS) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting the FUSE filesystem this test needs takes root; run as root (sudo go test ./cgroup) to prove hung-volume handling")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse (%v): the hung-filesystem test needs FUSE", err)
	}
	dir := filepath.Join(t.TempDir(), "hung")
	mustMkdir(t, dir)
	root := &hungFS{release: make(chan struct{})}
	server, err := fs.Mount(dir, root, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMountStrict: true, FsName: "hungfs", Name: "hungfs",
	}})
	if err != nil {
		t.Fatalf("mount FUSE at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		root.answer()
		waitNoPendingStats(t)
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, root
}

func waitNoPendingStats(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); pendingStats() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d stats still pending after their filesystem answered", pendingStats())
		}
	}
}

// A volume on a filesystem that never answers is known from mountinfo to have no
// disk: the filesystem is not touched and the caller is not held at all.
func TestChainOnHungFUSEVolumeDoesNotTouchIt(t *testing.T) {
	dir, hung := mountHungFS(t)
	cache := &ChainCache{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := cache.Chain(ctx, filepath.Join(dir, "volumes", "data"))
	took := time.Since(start)
	if !errors.Is(err, ErrNoBlockDevice) || !strings.Contains(err.Error(), "fuse") {
		t.Errorf("Chain error = %v, want ErrNoBlockDevice naming fuse", err)
	}
	if took > time.Second {
		t.Errorf("Chain took %s on a hung filesystem", took)
	}
	if n := hung.lookups.Load(); n != 0 {
		t.Errorf("the hung filesystem got %d lookups, want none", n)
	}
	// DeviceResolver.Resolve, for a policy's device path, does the same.
	if _, err := (DeviceResolver{}).Resolve(filepath.Join(dir, "x")); !errors.Is(err, ErrNoBlockDevice) {
		t.Errorf("Resolve error = %v, want ErrNoBlockDevice", err)
	}
}

// A path that reaches the hung filesystem only through a symlink on a local disk
// is stat'ed, and the stat is left behind at the caller's deadline: once per path,
// and never more than maxPendingStats in all.
func TestChainThroughSymlinkIntoHungFUSEReturnsAtDeadline(t *testing.T) {
	dir, hung := mountHungFS(t)
	local := t.TempDir()
	link := func(i int) string {
		path := filepath.Join(local, fmt.Sprintf("vol%d", i))
		if _, err := os.Lstat(path); err != nil {
			if err := os.Symlink(filepath.Join(dir, fmt.Sprintf("data%d", i)), path); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	cache := &ChainCache{}
	const deadline = 300 * time.Millisecond
	chainWithin := func(path string, deadline time.Duration) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		_, err := cache.Chain(ctx, path)
		if took := time.Since(start); took > deadline+500*time.Millisecond {
			t.Errorf("Chain(%s) took %s, want its deadline %s", path, took, deadline)
		}
		return err
	}

	for range 2 {
		if err := chainWithin(link(0), deadline); !errors.Is(err, ErrFilesystemHung) || !strings.Contains(err.Error(), link(0)) {
			t.Fatalf("Chain error = %v, want ErrFilesystemHung naming %s", err, link(0))
		}
	}
	if n, lookups := pendingStats(), hung.lookups.Load(); n != 1 || lookups != 1 {
		t.Errorf("after two calls on one path: %d stats pending, %d lookups; want one of each, shared", n, lookups)
	}

	for i := 1; i < maxPendingStats; i++ {
		if err := chainWithin(link(i), 20*time.Millisecond); !errors.Is(err, ErrFilesystemHung) {
			t.Fatalf("Chain(%s) error = %v, want ErrFilesystemHung", link(i), err)
		}
	}
	start := time.Now()
	err := chainWithin(link(maxPendingStats), deadline)
	if !errors.Is(err, ErrFilesystemHung) || !strings.Contains(err.Error(), "not started") || time.Since(start) > deadline/2 {
		t.Errorf("past the bound: Chain error = %v after %s, want an immediate ErrFilesystemHung, not started", err, time.Since(start))
	}
	if n := pendingStats(); n != maxPendingStats {
		t.Errorf("%d stats pending, want the bound %d", n, maxPendingStats)
	}

	// The filesystem answers: the workers end and the path resolves again.
	hung.answer()
	waitNoPendingStats(t)
	if err := chainWithin(link(0), deadline); errors.Is(err, ErrFilesystemHung) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the filesystem answered: Chain error = %v, want not exist", err)
	}
}
