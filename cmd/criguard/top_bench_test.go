package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/criguard/criguard/internal/fakeruntime"
)

// BenchmarkTopRefresh1000 is one `criguard top` refresh at 1,000 running
// throttled containers (100 pods of 10) on a v1 fake node: list pods and
// containers from the runtime, read every cgroup, compute rates, sort and
// render the table.
//
//	go test -run '^$' -bench TopRefresh1000 -benchtime 30x ./cmd/criguard/
func BenchmarkTopRefresh1000(b *testing.B) {
	root := b.TempDir()
	blkio := filepath.Join(root, "cg", "blkio")
	write := func(path, content string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write(filepath.Join(root, "proc", "self", "mountinfo"), fmt.Sprintf("38 31 0:35 / %s rw,relatime shared:16 - cgroup cgroup rw,blkio\n", blkio))
	if err := os.MkdirAll(filepath.Join(root, "sys", "dev", "block", "254:0"), 0o755); err != nil {
		b.Fatal(err)
	}
	fake := fakeruntime.New()
	_, sock := fakeruntime.Serve(b, fake)
	for p := range 100 {
		podID := fmt.Sprintf("p%03d", p)
		fake.AddPod(podID, "batch", podID, "burstable", nil)
		for c := range 10 {
			id := fmt.Sprintf("%s-c%d", podID, c)
			fake.AddContainer(id, podID, fmt.Sprintf("app%d", c))
			dir := filepath.Join(blkio, fake.Paths[id])
			write(filepath.Join(dir, "blkio.throttle.write_bps_device"), "254:0 1048576\n")
			for _, f := range []string{"read_bps_device", "read_iops_device", "write_iops_device"} {
				write(filepath.Join(dir, "blkio.throttle."+f), "")
			}
			write(filepath.Join(dir, "blkio.throttle.io_service_bytes"), "254:0 Read 4096\n254:0 Write 3145728\nTotal 3149824\n")
			write(filepath.Join(dir, "blkio.throttle.io_serviced"), "254:0 Read 1\n254:0 Write 48\nTotal 49\n")
		}
	}
	policyPath := filepath.Join(root, "policy.hcl")
	write(policyPath, policyWithWriteBPS("1MiB"))
	st, err := newStandalone(serveConfig{runtimeEndpoint: "unix://" + sock, policyPath: policyPath, resolver: "cri",
		procRoot: filepath.Join(root, "proc"), sysRoot: filepath.Join(root, "sys"), applyTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sampler := &topSampler{reporter: st.svc.Reporter()}
	ctx := context.Background()
	tc := topConfig{sortBy: sortByLimit, output: "table"}
	refresh := func() int {
		rates, err := sampler.sample(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := writeTop(io.Discard, tc, rates, time.Now(), nil); err != nil {
			b.Fatal(err)
		}
		return len(rates)
	}
	refresh() // resolves every container's cgroup once, as top's first sample does
	if n := refresh(); n != 1000 {
		b.Fatalf("a refresh shows %d rows, want 1000", n)
	}
	b.ReportAllocs()
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for b.Loop() {
		refresh()
	}
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	// Both ends of the runtime's socket are in this process: its CPU counts too.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
