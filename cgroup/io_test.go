package cgroup

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIOMaxLineHasAllFourKeys(t *testing.T) {
	backend := ioV2{mount: "/sys/fs/cgroup"}
	got := backend.Writes([]IOLimit{
		{Device: vda, WriteBPS: 1048576},
		{Device: sda, ReadBPS: 1, WriteBPS: 2, ReadIOPS: 3, WriteIOPS: 4},
		{Device: nvme},
	})
	want := []Write{
		{"io.max", "254:0 rbps=max wbps=1048576 riops=max wiops=max"},
		{"io.max", "8:0 rbps=1 wbps=2 riops=3 wiops=4"},
		{"io.max", "259:0 rbps=max wbps=max riops=max wiops=max"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Writes =\n%q\nwant\n%q", got, want)
	}
	reset := backend.ResetWrites([]Device{vda, sda})
	wantReset := []Write{
		{"io.max", "254:0 rbps=max wbps=max riops=max wiops=max"},
		{"io.max", "8:0 rbps=max wbps=max riops=max wiops=max"},
	}
	if !slices.Equal(reset, wantReset) {
		t.Errorf("ResetWrites = %q, want %q", reset, wantReset)
	}
	if !ThrottlesBufferedWrites(backend) || ThrottlesBufferedWrites(blkioV1{}) {
		t.Error("ThrottlesBufferedWrites: want true on v2 only")
	}
	if backend.Version() != 2 || backend.Mount() != "/sys/fs/cgroup" {
		t.Errorf("Version/Mount = %d %q", backend.Version(), backend.Mount())
	}
}

func TestIOReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kubepods.slice", "cri-containerd-abc.scope")
	writeFake(t, dir, "io.max", "8:0 rbps=2097152 wbps=max riops=max wiops=120\n254:0 rbps=max wbps=1048576 riops=max wiops=max\n")
	writeFake(t, dir, "io.stat", "254:0 rbytes=4096 wbytes=3145728 rios=1 wios=48 dbytes=0 dios=0\n"+
		"8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 cost.vrate=100.00 cost.usage=1\n")
	backend := ioV2{mount: "/unused"}

	limits, err := backend.Limits(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantLimits := []IOLimit{{Device: sda, ReadBPS: 2097152, WriteIOPS: 120}, {Device: vda, WriteBPS: 1048576}}
	if !slices.Equal(limits, wantLimits) {
		t.Errorf("Limits = %+v, want %+v", limits, wantLimits)
	}
	stats, err := backend.Stats(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantStats := []IOStat{{Device: sda, ReadBytes: 1, WriteBytes: 2, ReadIOs: 3, WriteIOs: 4}, {Device: vda, ReadBytes: 4096, WriteBytes: 3145728, ReadIOs: 1, WriteIOs: 48}}
	if !slices.Equal(stats, wantStats) {
		t.Errorf("Stats = %+v, want %+v", stats, wantStats)
	}
	for _, bad := range []string{"8:0 rbps\n", "8:0 rbps=-1\n", "x:0 rbps=max\n", "8:0 wbps=1e6\n"} {
		writeFake(t, dir, "io.max", bad)
		if _, err := backend.Limits(dir); !errors.Is(err, ErrMalformed) {
			t.Errorf("Limits(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
	writeFake(t, dir, "io.stat", "8:0 rbytes=x\n")
	if _, err := backend.Stats(dir); !errors.Is(err, ErrMalformed) {
		t.Errorf("Stats(malformed) error = %v, want ErrMalformed", err)
	}
}

func TestIOMaxRoundTrip(t *testing.T) {
	for _, limit := range []IOLimit{
		{Device: vda, WriteBPS: 1048576},
		{Device: sda, ReadBPS: 1, WriteBPS: 2, ReadIOPS: 3, WriteIOPS: 4},
		{Device: nvme, ReadIOPS: ^uint64(0)},
	} {
		got, err := ParseIOMax(ioMaxLine(limit))
		if err != nil || !slices.Equal(got, []IOLimit{limit}) {
			t.Errorf("ParseIOMax(ioMaxLine(%+v)) = %+v, %v", limit, got, err)
		}
	}
	// A line of only "max" is a device without limits: the kernel drops it.
	if got, err := ParseIOMax(ioMaxLine(IOLimit{Device: vda})); err != nil || len(got) != 0 {
		t.Errorf("ParseIOMax(all max) = %+v, %v; want nothing", got, err)
	}
}

func TestIOAvailable(t *testing.T) {
	mount := t.TempDir()
	backend := ioV2{mount: mount}
	pod := filepath.Join(mount, "kubepods.slice")
	ctr := filepath.Join(pod, "ctr.scope")
	mustMkdir(t, ctr)
	writeFake(t, mount, "cgroup.subtree_control", "cpu io memory pids\n")
	writeFake(t, pod, "cgroup.subtree_control", "cpu memory\n")

	if err := backend.Available(pod); err != nil {
		t.Errorf("Available(io delegated by parent) = %v", err)
	}
	err := backend.Available(ctr)
	if !errors.Is(err, ErrIONotEnabled) || !strings.Contains(err.Error(), filepath.Join(pod, "cgroup.subtree_control")) {
		t.Errorf("Available(io not delegated) = %v, want ErrIONotEnabled naming the parent's file", err)
	}
	if err := backend.Available(mount + "/"); !errors.Is(err, ErrIONotEnabled) {
		t.Errorf("Available(root) = %v, want ErrIONotEnabled", err)
	}
	mustMkdir(t, filepath.Join(ctr, "child"))
	if err := backend.Available(filepath.Join(ctr, "child")); err == nil {
		t.Error("Available(parent without subtree_control) = nil")
	}
	// A container that exited: its scope is gone and its pod's slice no longer
	// delegates io. The cgroup is gone, which is what the error says.
	err = backend.Available(filepath.Join(pod, "exited.scope"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrIONotEnabled) {
		t.Errorf("Available(removed cgroup) = %v, want ErrNotExist, not ErrIONotEnabled", err)
	}
}
