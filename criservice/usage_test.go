package criservice

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// noRuntime fails the test's premise loudly: any runtime call panics.
type noRuntime struct {
	runtimeapi.RuntimeServiceClient
}

func writeCgroupFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// v1Usage writes a v1 cgroup's counters: bytes and operations, read and write, on 254:0.
func v1Usage(t testing.TB, dir string, readBytes, writeBytes, reads, writes uint64) {
	t.Helper()
	writeCgroupFile(t, dir, "blkio.throttle.io_service_bytes",
		"254:0 Read "+itoa(readBytes)+"\n254:0 Write "+itoa(writeBytes)+"\n254:0 Sync 0\n254:0 Async 0\n254:0 Total 0\nTotal 0\n")
	writeCgroupFile(t, dir, "blkio.throttle.io_serviced",
		"254:0 Read "+itoa(reads)+"\n254:0 Write "+itoa(writes)+"\nTotal 0\n")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// spread puts the samples of prev `seconds` before those of cur, so rates are exact.
func spread(prev, cur []Usage, seconds float64) {
	now := time.Now()
	for i := range cur {
		cur[i].At = now
	}
	for i := range prev {
		prev[i].At = now.Add(-time.Duration(seconds * float64(time.Second)))
	}
}

func rateOf(t *testing.T, rates []Rate, id, device string) Rate {
	t.Helper()
	for _, r := range rates {
		if r.ID == id && r.Device == device {
			return r
		}
	}
	t.Fatalf("no rate for %s on %q in %+v", id, device, rates)
	return Rate{}
}

func TestUsageRatesAndPercentOfLimitV1(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	hot, err := e.startContainer(t, "c1", "p1", "writer")
	if err != nil {
		t.Fatal(err)
	}
	e.runPod(t, "p2", "web", "besteffort", nil)
	if _, err := e.startContainer(t, "c2", "p2", "nginx"); err != nil {
		t.Fatal(err)
	}
	hotDir := filepath.Join(e.host.mount, hot)
	v1Usage(t, hotDir, 0, 10<<20, 0, 160)
	first := e.svc.reporter.SampleUsage()
	// Two seconds later the writer wrote 2 MiB more in 32 writes: 1 MiB/s against
	// its 1 MiB/s write limit; the other did nothing.
	v1Usage(t, hotDir, 0, 12<<20, 0, 192)
	second := e.svc.reporter.SampleUsage()
	spread(first, second, 2)
	if len(second) != 2 || second[0].Namespace != "batch" || second[0].Container != "writer" || second[1].Namespace != "web" {
		t.Fatalf("samples = %+v, want batch/pod-p1/writer then web/pod-p2/nginx", second)
	}
	if second[0].Pressure != nil {
		t.Error("v1 sample has pressure; v1 has no io.pressure")
	}

	rates := Rates(first, second)
	w := rateOf(t, rates, "c1", "254:0")
	if w.WriteBPS != 1<<20 || w.WriteIOPS != 16 || w.ReadBPS != 0 || w.Seconds != 2 {
		t.Errorf("writer rate = %+v, want 1 MiB/s, 16 IOPS over 2 s", w)
	}
	if w.Limit != (Limit{ReadBPS: 2 << 20, WriteBPS: 1 << 20}) {
		t.Errorf("writer limit = %+v, want the policy's 2 MiB/s read, 1 MiB/s write", w.Limit)
	}
	if w.PercentOfLimit == nil || *w.PercentOfLimit != 100 {
		t.Errorf("writer %% of limit = %v, want 100 (the write key; reads are idle)", w.PercentOfLimit)
	}
	if w.PressureSome != nil || w.String() != "batch/pod-p1/writer" {
		t.Errorf("writer pressure %v, name %q", w.PressureSome, w.String())
	}
	i := rateOf(t, rates, "c2", "")
	if i.PercentOfLimit != nil || i.WriteBPS != 0 {
		t.Errorf("idle unthrottled container = %+v, want no I/O and no %% (no limit)", i)
	}

	// A workload only in one sample has no rate; a counter that went back is zero.
	if got := Rates(nil, second); len(got) != 0 {
		t.Errorf("Rates without a previous sample = %+v", got)
	}
	v1Usage(t, hotDir, 0, 1<<20, 0, 1)
	third := e.svc.reporter.SampleUsage()
	spread(second, third, 1)
	if r := rateOf(t, Rates(second, third), "c1", "254:0"); r.WriteBPS != 0 || *r.PercentOfLimit != 0 {
		t.Errorf("after a counter reset: %+v, want 0", r)
	}
}

func TestUsageV2PodBudgetAndPressure(t *testing.T) {
	e := newTestEnv(t, func(o *Options) {})
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.splitPodBudget = false
	podRel := e.runPod(t, "p1", "team", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	podDir, dir := filepath.Join(e.host.mount, podRel), filepath.Join(e.host.mount, rel)
	sample := func(wbytes, wios string, someUs, fullUs string) []Usage {
		for _, d := range []string{podDir, dir} {
			writeCgroupFile(t, d, "io.stat", "254:0 rbytes=0 wbytes="+wbytes+" rios=0 wios="+wios+" dbytes=0 dios=0\n")
			writeCgroupFile(t, d, "io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total="+someUs+"\nfull avg10=0.00 avg60=0.00 avg300=0.00 total="+fullUs+"\n")
		}
		return e.svc.reporter.SampleUsage()
	}
	first := sample("0", "0", "0", "0")
	// 4 s: 6 MiB written (1.5 MiB/s of the pod's 3 MiB/s), 1 s of some stall, 0.4 s full.
	second := sample("6291456", "96", "1000000", "400000")
	spread(first, second, 4)
	if len(second) != 2 || second[0].Kind != "container" || second[1].Kind != "pod" {
		t.Fatalf("samples = %+v, want the container and its pod's budget", second)
	}
	rates := Rates(first, second)
	pod := rateOf(t, rates, "p1", "254:0")
	if pod.Limit.WriteBPS != 3<<20 || pod.WriteBPS != 1.5*(1<<20) || *pod.PercentOfLimit != 50 {
		t.Errorf("pod budget rate = %#v, want 1.5 MiB/s = 50%% of 3 MiB/s", pod)
	}
	if *pod.PressureSome != 25 || *pod.PressureFull != 10 || pod.String() != "team/pod-p1 (pod)" {
		t.Errorf("pod pressure some=%v full=%v, want 25%% and 10%% of 4 s", *pod.PressureSome, *pod.PressureFull)
	}
	if c := rateOf(t, rates, "c1", "254:0"); c.PercentOfLimit != nil || *c.PressureSome != 25 {
		t.Errorf("container under a pod budget = %+v: no limit of its own, its own pressure", c)
	}

	// The metric is the stall time io.pressure holds, for the container and for
	// the pod holding the budget (container="").
	want := `
# HELP criguard_io_pressure_stalled_seconds_total Time some (or all: full) of the cgroup's tasks stalled on I/O, from io.pressure (cgroup v2 only).
# TYPE criguard_io_pressure_stalled_seconds_total counter
criguard_io_pressure_stalled_seconds_total{container="",kind="full",namespace="team",pod="pod-p1"} 0.4
criguard_io_pressure_stalled_seconds_total{container="",kind="some",namespace="team",pod="pod-p1"} 1
criguard_io_pressure_stalled_seconds_total{container="app",kind="full",namespace="team",pod="pod-p1"} 0.4
criguard_io_pressure_stalled_seconds_total{container="app",kind="some",namespace="team",pod="pod-p1"} 1
`
	if err := testutil.CollectAndCompare(e.svc.reporter.WorkloadCollector(), strings.NewReader(want), "criguard_io_pressure_stalled_seconds_total"); err != nil {
		t.Error(err)
	}
	// A pod without a budget has no row of its own: its containers have theirs.
	e.runPod(t, "p2", "web", "besteffort", nil)
	if _, err := e.startContainer(t, "c2", "p2", "nginx"); err != nil {
		t.Fatal(err)
	}
	for _, u := range e.svc.reporter.SampleUsage() {
		if u.ID == "p2" {
			t.Errorf("pod without a budget has a row: %+v", u)
		}
	}
}

func TestWorkloadMetricsFollowContainers(t *testing.T) {
	e := newTestEnv(t, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.svc.reporter.WorkloadCollector())
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "writer")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.host.mount, rel)
	v1Usage(t, dir, 4096, 3<<20, 1, 48)
	// A scrape reads files only: no runtime call on the scrape path.
	rt := e.svc.store.runtime
	e.svc.store.runtime = noRuntime{}
	want := `
# HELP criguard_io_bytes_total Bytes read and written by the cgroup since it was created (v2 io.stat, v1 blkio.throttle.io_service_bytes).
# TYPE criguard_io_bytes_total counter
criguard_io_bytes_total{container="writer",device="254:0",namespace="batch",op="read",pod="pod-p1"} 4096
criguard_io_bytes_total{container="writer",device="254:0",namespace="batch",op="write",pod="pod-p1"} 3.145728e+06
# HELP criguard_io_limit I/O limit in force, read back from the cgroup: bytes/s (read_bps, write_bps) or operations/s (read_iops, write_iops). No series: no limit.
# TYPE criguard_io_limit gauge
criguard_io_limit{container="writer",device="254:0",namespace="batch",op="read_bps",pod="pod-p1"} 2.097152e+06
criguard_io_limit{container="writer",device="254:0",namespace="batch",op="write_bps",pod="pod-p1"} 1.048576e+06
# HELP criguard_io_operations_total Read and write operations of the cgroup since it was created (v2 io.stat, v1 blkio.throttle.io_serviced).
# TYPE criguard_io_operations_total counter
criguard_io_operations_total{container="writer",device="254:0",namespace="batch",op="read",pod="pod-p1"} 1
criguard_io_operations_total{container="writer",device="254:0",namespace="batch",op="write",pod="pod-p1"} 48
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	e.svc.store.runtime = rt

	// The container goes (runc removes its cgroup): its series go with it, at the
	// next scrape, before any reconcile pass.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("series after the container went = %d, %v; want none", n, err)
	}
	// And once the runtime no longer lists it, it leaves the cache.
	e.fake.Mu.Lock()
	delete(e.fake.Containers, "c1")
	e.fake.Mu.Unlock()
	if err := e.svc.reporter.TrackRunning(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.svc.store.container("c1"); ok {
		t.Error("TrackRunning kept a container the runtime no longer runs")
	}
}

func TestTrackRunningResolvesNewContainers(t *testing.T) {
	e := newTestEnv(t, nil)
	cfg := e.fake.AddPod("p1", "batch", "etl", "burstable", nil)
	e.host.mkdir(t, cfg.Linux.CgroupParent)
	e.fake.AddContainer("c1", "p1", "loader")
	e.host.mkdir(t, e.fake.Paths["c1"])
	if got := e.svc.reporter.SampleUsage(); len(got) != 0 {
		t.Fatalf("before tracking: %+v, want nothing (the cache is empty)", got)
	}
	if err := e.svc.reporter.TrackRunning(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := e.svc.reporter.SampleUsage()
	if len(got) != 1 || got[0].ID != "c1" || got[0].Pod != "etl" || got[0].Container != "loader" || got[0].Dir == "" {
		t.Errorf("after tracking: %+v, want c1 with its pod, name and cgroup", got)
	}
}
