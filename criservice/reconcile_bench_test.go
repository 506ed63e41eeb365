package criservice

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkReconcile1000 is one reconcile pass over 1,000 running containers
// (100 pods of 10) whose cgroups already hold the policy: the steady state,
// where a pass lists, reads back and writes nothing. "read" reads every cgroup's
// limits each pass (--read-back-max-age 0); "watched" only those written since.
//
//	go test -run '^$' -bench Reconcile1000 -benchtime 20x ./criservice/
func BenchmarkReconcile1000(b *testing.B) {
	b.Run("read", func(b *testing.B) { benchmarkReconcile1000(b, 0) })
	b.Run("watched", func(b *testing.B) { benchmarkReconcile1000(b, time.Hour) })
}

func benchmarkReconcile1000(b *testing.B, readBackMaxAge time.Duration) {
	e := newTestEnv(b, func(o *Options) { o.ReadBackMaxAge = readBackMaxAge })
	b.Cleanup(func() { e.svc.Close() })
	for p := range 100 {
		podID := fmt.Sprintf("p%03d", p)
		cfg := e.fake.AddPod(podID, "batch", podID, "burstable", nil)
		e.host.mkdir(b, cfg.Linux.CgroupParent)
		for c := range 10 {
			id := fmt.Sprintf("%s-c%d", podID, c)
			e.fake.AddContainer(id, podID, "app")
			e.host.mkdir(b, e.fake.Paths[id])
		}
	}
	ctx := context.Background()
	first, err := e.svc.Reconcile(ctx)
	if err != nil || first.Containers != 1000 || first.Fixed != 1000 {
		b.Fatalf("first pass = %+v, %v; want 1000 containers throttled", first, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := e.svc.Reconcile(ctx)
		if err != nil || res.Fixed != 0 || res.Failed != 0 {
			b.Fatalf("steady pass = %+v, %v", res, err)
		}
	}
}
