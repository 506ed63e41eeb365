package cgroup

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestRootPressureGrowsUnderThrottle proves that a cgroup held back by its
// io.max stalls, and that Pressure reads it: io.pressure "some" grows by most
// of the throttled write's time. v2 only (v1 has no io.pressure): it runs in
// the qemu VM of `make test-v2`. TMPDIR must be on a real disk.
func TestRootPressureGrowsUnderThrottle(t *testing.T) {
	backend := hostBackend(t)
	reader, ok := backend.(PressureReader)
	if !ok {
		t.Skipf("cgroup v%d has no io.pressure; `make test-v2` runs this on v2", backend.Version())
	}
	dataDir := t.TempDir()
	disk, err := DeviceResolver{}.Resolve(dataDir)
	if err != nil {
		t.Fatalf("resolve the disk of TMPDIR: %v", err)
	}
	dir := createTestCgroup(t, backend)
	if err := Apply(dir, backend.Writes([]IOLimit{{Device: disk, WriteBPS: throttleBPS}})); err != nil {
		t.Fatal(err)
	}
	before, err := reader.Pressure(dir)
	if err != nil {
		t.Fatalf("io.pressure (a kernel without PSI needs psi=1): %v", err)
	}
	took := timeDirectWrite(t, dir, filepath.Join(dataDir, "pressure"))
	after, err := reader.Pressure(dir)
	if err != nil {
		t.Fatal(err)
	}
	some, full := after.Some.Total-before.Some.Total, after.Full.Total-before.Full.Total
	fmt.Printf("criguard-io-pressure: v%d write of %d bytes at %d B/s took %.2fs; io.pressure some +%.2fs full +%.2fs avg10 some %.2f\n",
		backend.Version(), directWriteSize, throttleBPS, took.Seconds(), some.Seconds(), full.Seconds(), after.Some.Avg10)
	// The writer is the cgroup's only task and waits on the throttle most of
	// the time: some and full both grow by most of the write's duration.
	if some < took/2 || full < took/2 {
		t.Errorf("io.pressure grew by some %v, full %v during a %v throttled write; want at least half of it", some, full, took)
	}
	if some > took+time.Second {
		t.Errorf("io.pressure some grew by %v, more than the %v the write took", some, took)
	}
}
