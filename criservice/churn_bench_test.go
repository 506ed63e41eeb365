package criservice

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkChurn is one container's whole life through the hooks (create, start,
// stop, remove, its cgroup removed as the runtime does), and reports how much the
// live heap grew per container after a GC: what a node's churn leaves behind
// (docs/BENCHMARKS.md §13, the soak).
//
//	go test -run '^$' -bench Churn -benchtime 2000x ./criservice/
func BenchmarkChurn(b *testing.B) {
	e := newTestEnv(b, nil)
	e.runPod(b, "p1", "batch", "burstable", nil)
	i := 0
	cycle := func() {
		id := fmt.Sprintf("c%06d", i)
		i++
		if _, err := e.startContainer(b, id, "p1", "app"); err != nil {
			b.Fatal(err)
		}
		e.fake.Mu.Lock()
		rel := e.fake.Paths[id]
		delete(e.fake.Containers, id)
		delete(e.fake.Paths, id)
		e.fake.Mu.Unlock()
		if err := e.call(b, "StopContainer", &runtimeapi.StopContainerRequest{ContainerId: id}, &runtimeapi.StopContainerResponse{}); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(e.host.mount, rel)); err != nil {
			b.Fatal(err)
		}
		if err := e.call(b, "RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: id}, &runtimeapi.RemoveContainerResponse{}); err != nil {
			b.Fatal(err)
		}
	}
	heapGrowth(b, e, cycle, "heap-B/container")
}

// BenchmarkPodChurn is one pod's whole life through the hooks (run, one container
// started, both removed with their cgroups), with the limit files watched, and
// reports what it leaves in the live heap: the watches of removed cgroups, for one.
//
//	go test -run '^$' -bench PodChurn -benchtime 2000x ./criservice/
func BenchmarkPodChurn(b *testing.B) {
	e := newTestEnv(b, func(o *Options) { o.ReadBackMaxAge = time.Hour })
	b.Cleanup(func() { e.svc.Close() })
	i := 0
	cycle := func() {
		pod, id := fmt.Sprintf("p%06d", i), fmt.Sprintf("c%06d", i)
		i++
		parent := e.runPod(b, pod, "batch", "burstable", nil)
		if _, err := e.startContainer(b, id, pod, "app"); err != nil {
			b.Fatal(err)
		}
		e.removeInRuntime(b, id)
		e.fake.Mu.Lock()
		delete(e.fake.Pods, pod)
		delete(e.fake.Parents, pod)
		e.fake.Mu.Unlock()
		// Renamed away, as removeInRuntime does the container's: cgroupfs sends no IN_IGNORED.
		dir := filepath.Join(e.host.mount, parent)
		if err := os.Rename(dir, dir+".removed"); err != nil {
			b.Fatal(err)
		}
		if err := e.call(b, "RemoveContainer", &runtimeapi.RemoveContainerRequest{ContainerId: id}, &runtimeapi.RemoveContainerResponse{}); err != nil {
			b.Fatal(err)
		}
		if err := e.call(b, "RemovePodSandbox", &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}, &runtimeapi.RemovePodSandboxResponse{}); err != nil {
			b.Fatal(err)
		}
	}
	heapGrowth(b, e, cycle, "heap-B/pod")
}

// heapGrowth runs cycle b.N times, after 200 that fill the caches and pools, and
// reports how much the live heap grew per cycle after a GC.
func heapGrowth(b *testing.B, e *testEnv, cycle func(), unit string) {
	liveHeap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for range 200 {
		cycle()
	}
	before := liveHeap()
	b.ResetTimer()
	for b.Loop() {
		cycle()
	}
	b.StopTimer()
	after := liveHeap()
	runtime.KeepAlive(e) // what the daemon holds stays reachable while the heap is read
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), unit)
}
