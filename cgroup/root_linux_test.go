package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The root test re-executes this binary as the process it throttles; this
// variable tells the child which file to write.
const directWriteEnv = "CRIGUARD_TEST_DIRECT_WRITE_FILE"

const (
	directWriteSize  = 3 << 20 // 3 MiB
	directWriteChunk = 64 << 10
	throttleBPS      = 1 << 20 // 1 MiB/s, so the write takes about 3 s
)

func TestMain(m *testing.M) {
	if path := os.Getenv(directWriteEnv); path != "" {
		if err := directWriteChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "direct write:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// directWriteChild waits until the parent has moved it into the cgroup
// (one byte on stdin), then writes directWriteSize bytes with O_DIRECT, which
// both v1 blkio and v2 io throttle, and prints how long the writes took, so
// process start and exit on a busy machine do not count.
func directWriteChild(path string) error {
	if _, err := io.ReadFull(os.Stdin, make([]byte, 1)); err != nil {
		return fmt.Errorf("wait for the parent: %w", err)
	}
	// O_DIRECT needs an aligned buffer: an anonymous mapping is page aligned.
	buf, err := unix.Mmap(-1, 0, directWriteChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for i := range buf {
		buf[i] = byte(i)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_DIRECT, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	for written := 0; written < directWriteSize; written += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("write %s at %d: %w", path, written, err)
		}
	}
	// O_DIRECT data is on the disk when write returns: no fsync, whose
	// journal flush would measure the other I/O on the disk, not this cgroup.
	_, err = fmt.Println(time.Since(start).Nanoseconds())
	return err
}

// hostBackend is this host's io backend, for the tests that make real cgroups:
// skipped unless root.
func hostBackend(t testing.TB) IO {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups; `sudo go test -run Root ./cgroup` or `make test-v2`")
	}
	host, err := DetectHost("")
	if err != nil {
		t.Fatal(err)
	}
	backend, err := host.IO()
	if err != nil {
		t.Fatal(err)
	}
	return backend
}

// TestRootThrottleDirectWrite proves the kernel enforces what the backend
// writes, on whatever this host has: v1 blkio here, v2 io.max inside the
// qemu VM of `make test-v2`. TMPDIR must be on a real disk.
func TestRootThrottleDirectWrite(t *testing.T) {
	backend := hostBackend(t)
	dataDir := t.TempDir()
	disk, err := DeviceResolver{}.Resolve(dataDir)
	if err != nil {
		t.Fatalf("resolve the disk of TMPDIR (set TMPDIR to a dir on a real disk): %v", err)
	}
	t.Logf("backend v%d at %s, data dir %s on %s", backend.Version(), backend.Mount(), dataDir, disk)

	dir := createTestCgroup(t, backend)
	limit := IOLimit{Device: disk, WriteBPS: throttleBPS}
	if err := Apply(dir, backend.Writes([]IOLimit{limit})); err != nil {
		t.Fatal(err)
	}
	if got, err := backend.Limits(dir); err != nil || !slices.Equal(got, []IOLimit{limit}) {
		t.Fatalf("Limits after write = %+v, %v; want %+v", got, err, limit)
	}

	file := filepath.Join(dataDir, "direct")
	throttled := timeDirectWrite(t, dir, file)
	fmt.Printf("criguard-io-throttle: v%d %s write %d bytes at %d B/s took %.2fs\n", backend.Version(), disk, directWriteSize, throttleBPS, throttled.Seconds())
	if throttled < 2300*time.Millisecond || throttled > 5*time.Second {
		t.Errorf("throttled O_DIRECT write of 3 MiB took %v, want about 3 s (2.3 s to 5 s)", throttled)
	}
	stats, err := backend.Stats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(stats, func(s IOStat) bool { return s.Device == disk }); i < 0 || stats[i].WriteBytes < directWriteSize {
		t.Errorf("Stats = %+v, want at least %d bytes written to %s", stats, directWriteSize, disk)
	}

	if err := Apply(dir, backend.ResetWrites([]Device{disk})); err != nil {
		t.Fatal(err)
	}
	if got, err := backend.Limits(dir); err != nil || len(got) != 0 {
		t.Fatalf("Limits after reset = %+v, %v; want none", got, err)
	}
	free := timeDirectWrite(t, dir, file)
	fmt.Printf("criguard-io-throttle: v%d %s after reset took %.2fs\n", backend.Version(), disk, free.Seconds())
	if free >= time.Second {
		t.Errorf("O_DIRECT write of 3 MiB after reset took %v, want under 1 s", free)
	}

	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove cgroup %s: %v", dir, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still there after remove: %v", dir, err)
	}
}

// createTestCgroup makes a cgroup below the backend's mount and, on v2,
// makes sure the root delegates io to it.
func createTestCgroup(t *testing.T, backend IO) string {
	t.Helper()
	dir, err := SecureJoin(backend.Mount(), "criguard-test-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: remove %s: %v", dir, err)
		}
	})
	if backend.Available(dir) != nil {
		if err := WriteFile(backend.Mount(), "cgroup.subtree_control", "+io"); err != nil {
			t.Fatal(err)
		}
	}
	if err := backend.Available(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// timeDirectWrite runs the child writer inside cgroup dir and returns how
// long its writes took.
func timeDirectWrite(t *testing.T, dir, file string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), directWriteEnv+"="+file)
	var elapsed strings.Builder
	child.Stdout, child.Stderr = &elapsed, os.Stderr
	release, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "cgroup.procs", strconv.Itoa(child.Process.Pid)); err != nil {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatal(err)
	}
	if _, err := release.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	release.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("direct-write child: %v", err)
	}
	nanoseconds, err := strconv.ParseInt(strings.TrimSpace(elapsed.String()), 10, 64)
	if err != nil {
		t.Fatalf("direct-write child printed %q: %v", elapsed.String(), err)
	}
	return time.Duration(nanoseconds)
}

// On the real cgroupfs a removed cgroup sends no IN_IGNORED and its watch lives on:
// a cgroup made again at the same path is read anew, and Forget drops the watch of
// one removed.
func TestRootLimitWatchCgroupRemovedAndMadeAgain(t *testing.T) {
	backend := hostBackend(t)
	disk, err := DeviceResolver{}.Resolve(t.TempDir())
	if err != nil {
		t.Fatalf("resolve the disk of TMPDIR: %v", err)
	}
	w, err := NewLimitWatch(backend, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	limit := func(bps uint64) []IOLimit { return []IOLimit{{Device: disk, WriteBPS: bps}} }
	wantLimits := func(dir string, want []IOLimit) {
		t.Helper()
		if got, err := w.Limits(dir); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Limits(%s) = %+v, %v; want %+v", dir, got, err, want)
		}
	}

	dir := createTestCgroup(t, backend)
	if err := Apply(dir, backend.Writes(limit(1<<20))); err != nil {
		t.Fatal(err)
	}
	wantLimits(dir, limit(1<<20))
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Apply(dir, backend.Writes(limit(2<<20))); err != nil {
		t.Fatal(err)
	}
	wantLimits(dir, limit(2<<20))
	wantLimits(dir, limit(2<<20))
	if _, _, watched := w.Counts(); watched != 1 {
		t.Fatalf("%d watched, want 1", watched)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	w.Forget(func(d string) bool {
		_, err := os.Stat(d)
		return errors.Is(err, os.ErrNotExist)
	})
	if _, _, watched := w.Counts(); watched != 0 {
		t.Fatalf("%d watched after the cgroup's removal and Forget, want 0", watched)
	}
}
