package cgroup

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

var (
	vda  = Device{Major: 254, Minor: 0}
	sda  = Device{Major: 8, Minor: 0}
	nvme = Device{Major: 259, Minor: 0}
)

func TestBlkioWritesAllFourFiles(t *testing.T) {
	backend := blkioV1{mount: "/sys/fs/cgroup/blkio"}
	got := backend.Writes([]IOLimit{
		{Device: vda, WriteBPS: 1048576},
		{Device: sda, ReadBPS: 100, WriteBPS: 200, ReadIOPS: 300, WriteIOPS: 400},
	})
	want := []Write{
		{"blkio.throttle.read_bps_device", "254:0 0"},
		{"blkio.throttle.write_bps_device", "254:0 1048576"},
		{"blkio.throttle.read_iops_device", "254:0 0"},
		{"blkio.throttle.write_iops_device", "254:0 0"},
		{"blkio.throttle.read_bps_device", "8:0 100"},
		{"blkio.throttle.write_bps_device", "8:0 200"},
		{"blkio.throttle.read_iops_device", "8:0 300"},
		{"blkio.throttle.write_iops_device", "8:0 400"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Writes =\n%q\nwant\n%q", got, want)
	}
	reset := backend.ResetWrites([]Device{nvme})
	wantReset := []Write{
		{"blkio.throttle.read_bps_device", "259:0 0"},
		{"blkio.throttle.write_bps_device", "259:0 0"},
		{"blkio.throttle.read_iops_device", "259:0 0"},
		{"blkio.throttle.write_iops_device", "259:0 0"},
	}
	if !slices.Equal(reset, wantReset) {
		t.Errorf("ResetWrites = %q, want %q", reset, wantReset)
	}
	if backend.Version() != 1 || backend.Mount() != "/sys/fs/cgroup/blkio" || backend.Available("/x") != nil {
		t.Errorf("Version/Mount/Available = %d %q %v", backend.Version(), backend.Mount(), backend.Available("/x"))
	}
}

func TestBlkioReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kubepods", "pod1", "abc")
	writeFake(t, dir, "blkio.throttle.read_bps_device", "8:0 100\n")
	writeFake(t, dir, "blkio.throttle.write_bps_device", "8:0 200\n254:0 1048576\n")
	writeFake(t, dir, "blkio.throttle.read_iops_device", "")
	writeFake(t, dir, "blkio.throttle.write_iops_device", "254:0 0\n8:0 400\n")
	writeFake(t, dir, "blkio.throttle.io_service_bytes",
		"254:0 Read 4096\n254:0 Write 3145728\n254:0 Sync 3145728\n254:0 Async 4096\n254:0 Discard 0\n254:0 Total 3149824\nTotal 3149824\n")
	writeFake(t, dir, "blkio.throttle.io_serviced",
		"254:0 Read 1\n254:0 Write 48\n254:0 Sync 48\n254:0 Async 1\n254:0 Discard 0\n254:0 Total 49\nTotal 49\n")
	backend := blkioV1{mount: "/unused"}

	limits, err := backend.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantLimits := []IOLimit{
		{Device: sda, ReadBPS: 100, WriteBPS: 200, WriteIOPS: 400},
		{Device: vda, WriteBPS: 1048576},
	}
	if !slices.Equal(limits, wantLimits) {
		t.Errorf("Limits = %+v, want %+v", limits, wantLimits)
	}
	stats, err := backend.Stats(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantStats := []IOStat{{Device: vda, ReadBytes: 4096, WriteBytes: 3145728, ReadIOs: 1, WriteIOs: 48}}
	if !slices.Equal(stats, wantStats) {
		t.Errorf("Stats = %+v, want %+v", stats, wantStats)
	}

	writeFake(t, dir, "blkio.throttle.read_iops_device", "8:0 lots\n")
	if _, err := backend.Limits(dir); !errors.Is(err, ErrMalformed) {
		t.Errorf("Limits(malformed) error = %v, want ErrMalformed", err)
	}
	if _, err := backend.Limits(t.TempDir()); err == nil {
		t.Error("Limits(empty dir) = nil error")
	}
}

// Writing the writes to a fake tree and reading them back gives the limits,
// which is the contract criservice's reconcile depends on.
func TestBlkioWriteThenReadBack(t *testing.T) {
	dir := t.TempDir()
	for _, key := range blkioThrottleKeys {
		writeFake(t, dir, key.file, "")
	}
	backend := blkioV1{mount: dir}
	limit := IOLimit{Device: vda, ReadBPS: 1, WriteBPS: 2, ReadIOPS: 3, WriteIOPS: 4}
	if err := Apply(dir, backend.Writes([]IOLimit{limit})); err != nil {
		t.Fatal(err)
	}
	got, err := backend.Limits(dir)
	if err != nil || !slices.Equal(got, []IOLimit{limit}) {
		t.Errorf("Limits after Apply = %+v, %v; want %+v", got, err, limit)
	}
}
