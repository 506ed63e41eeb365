package criservice

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// busyNode is 1,000 running throttled containers (100 pods of 10) whose cgroup
// files hold limits and usage, on v1 or v2, known to the cache as after a
// reconcile pass.
func busyNode(b *testing.B, v2 bool) *testEnv {
	b.Helper()
	e := newTestEnv(b, nil)
	if v2 {
		e.host = newFakeHostV2(b)
		e.svc.useIO(e.host.io)
		e.svc.planner.splitPodBudget = false
	}
	for p := range 100 {
		podID := fmt.Sprintf("p%03d", p)
		cfg := e.fake.AddPod(podID, "batch", podID, "burstable", nil)
		e.host.mkdir(b, cfg.Linux.CgroupParent)
		for c := range 10 {
			id := fmt.Sprintf("%s-c%d", podID, c)
			e.fake.AddContainer(id, podID, fmt.Sprintf("app%d", c))
			dir := e.host.mkdir(b, e.fake.Paths[id])
			if v2 {
				writeCgroupFile(b, dir, "io.stat", "254:0 rbytes=4096 wbytes=3145728 rios=1 wios=48 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n")
				writeCgroupFile(b, dir, "io.pressure", "some avg10=1.00 avg60=2.00 avg300=3.00 total=123456\nfull avg10=0.50 avg60=1.00 avg300=1.50 total=65432\n")
			} else {
				v1Usage(b, dir, 4096, 3<<20, 1, 48)
			}
		}
	}
	res, err := e.svc.Reconcile(context.Background())
	if err != nil || res.Containers != 1000 {
		b.Fatalf("reconcile = %+v, %v", res, err)
	}
	return e
}

// cpuTime is the process's user and system CPU so far: file reads cost
// system time, which ns/op alone would hide behind wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrape1000 is one scrape of /metrics with --metrics-workloads at
// 1,000 containers: every cgroup's files read, 8,000+ series encoded.
//
//	go test -run '^$' -bench Scrape1000 -benchtime 50x ./criservice/
func BenchmarkScrape1000(b *testing.B) {
	for _, mode := range []struct {
		name string
		v2   bool
	}{{"v1", false}, {"v2", true}} {
		b.Run(mode.name, func(b *testing.B) {
			e := busyNode(b, mode.v2)
			reg := prometheus.NewRegistry()
			reg.MustRegister(e.svc.reporter.WorkloadCollector())
			handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.Len() < 1000*200 {
				b.Fatalf("scrape: %d, %d bytes", rec.Code, rec.Body.Len())
			}
			size := rec.Body.Len()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				io.Copy(io.Discard, rec.Body)
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

// BenchmarkSampleUsage1000 is the file reads alone: what a `top` refresh and a
// scrape share.
func BenchmarkSampleUsage1000(b *testing.B) {
	e := busyNode(b, false)
	if n := len(e.svc.reporter.SampleUsage()); n != 1000 {
		b.Fatalf("sampled %d cgroups, want 1000", n)
	}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		e.svc.reporter.SampleUsage()
	}
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
