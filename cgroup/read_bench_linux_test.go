package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkHostReadBack1000 reads the limits, usage and (v2) pressure of 1,000
// real, empty cgroups of this host, each with a write limit: the file reads of
// one --metrics-workloads scrape or one `criguard top` refresh, on the kernel's
// own files. Root only.
//
//	sudo go test -run '^$' -bench HostReadBack1000 -benchtime 20x ./cgroup/
func BenchmarkHostReadBack1000(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to make cgroups")
	}
	host, err := DetectHost("")
	if err != nil {
		b.Skip(err)
	}
	backend, err := host.IO()
	if err != nil {
		b.Skip(err)
	}
	disk, err := DeviceResolver{}.Resolve("/")
	if err != nil {
		b.Skip(err)
	}
	parent := filepath.Join(backend.Mount(), fmt.Sprintf("criguard-bench-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		b.Fatal(err)
	}
	dirs := make([]string, 1000)
	b.Cleanup(func() {
		for _, d := range dirs {
			if d != "" {
				os.Remove(d)
			}
		}
		os.Remove(parent)
	})
	if backend.Version() == 2 {
		if err := WriteFile(parent, "cgroup.subtree_control", "+io"); err != nil {
			b.Skip(err)
		}
	}
	for i := range dirs {
		dir := filepath.Join(parent, fmt.Sprintf("c%04d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		dirs[i] = dir
		if err := Apply(dir, backend.Writes([]IOLimit{{Device: disk, WriteBPS: 1 << 20}})); err != nil {
			b.Fatal(err)
		}
	}
	pressure, _ := backend.(PressureReader)
	readAll := func() {
		for _, dir := range dirs {
			if limits, err := backend.Limits(dir); err != nil || len(limits) != 1 {
				b.Fatalf("%s: %v %v", dir, limits, err)
			}
			if _, err := backend.Stats(dir); err != nil {
				b.Fatal(err)
			}
			if pressure != nil {
				pressure.Pressure(dir)
			}
		}
	}
	b.ReportAllocs()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	for b.Loop() {
		readAll()
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
