package criservice

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

func TestExplainContainerSaysWhyAndWhatToWrite(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.DryRun = true })
	e.runPod(t, "p1", "etl-3", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "worker")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Kind != "container" || ex.Workload.Namespace != "etl-3" || ex.Workload.QoS != "burstable" {
		t.Errorf("workload = %+v", ex.Workload)
	}
	if ex.Decision.Source != policy.SourceRule || ex.Decision.Rule != "batch" || !strings.Contains(ex.Decision.Reason, "etl-*") {
		t.Errorf("decision = %+v, want rule batch because of etl-*", ex.Decision)
	}
	if ex.Dir != filepath.Join(e.host.mount, rel) {
		t.Errorf("dir = %q", ex.Dir)
	}
	want := cgroup.IOLimit{Device: cgroup.Device{Major: 254}, ReadBPS: 2 << 20, WriteBPS: 1 << 20}
	if len(ex.Limits) != 1 || ex.Limits[0] != want {
		t.Errorf("limits = %+v, want %+v", ex.Limits, want)
	}
	if len(ex.Current) != 0 {
		t.Errorf("dry run: current = %+v, want nothing in force", ex.Current)
	}
	var wrote bool
	for _, w := range ex.Writes {
		if w.File == "blkio.throttle.write_bps_device" && w.Value == "254:0 1048576" {
			wrote = true
		}
	}
	if !wrote {
		t.Errorf("writes = %+v, want the write_bps write", ex.Writes)
	}
	if len(ex.Pending) != len(ex.Writes) {
		t.Errorf("pending = %+v, want every write (dry run wrote nothing)", ex.Pending)
	}
	if !strings.Contains(strings.Join(ex.Notes, " "), "buffered") {
		t.Errorf("notes = %q, want the v1 buffered-write caveat", ex.Notes)
	}
}

func TestExplainPodAndPodScope(t *testing.T) {
	e := newTestEnv(t, nil)
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	e.svc.planner.splitPodBudget = false
	e.runPod(t, "p1", "team", "guaranteed", nil)
	if _, err := e.startContainer(t, "c1", "p1", "app"); err != nil {
		t.Fatal(err)
	}
	ex, err := e.svc.reporter.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Pod == nil || len(ex.Pod.Limits) != 1 || ex.Pod.Limits[0].WriteBPS != 3<<20 {
		t.Fatalf("container in a pod-scope rule: pod plan = %+v", ex.Pod)
	}
	if len(ex.Pod.Current) != 1 || ex.Pod.Current[0].WriteBPS != 3<<20 {
		t.Errorf("pod budget in force = %+v", ex.Pod.Current)
	}
	podEx, err := e.svc.reporter.Explain(context.Background(), "p1")
	if err != nil || podEx.Kind != "pod" || podEx.Workload.QoS != "guaranteed" {
		t.Fatalf("explain pod: %+v, %v", podEx, err)
	}
	if _, err := e.svc.reporter.Explain(context.Background(), "nope"); err == nil {
		t.Fatal("explain of an unknown id succeeded")
	}
}

func TestStatusReadsBackAndFlagsMismatch(t *testing.T) {
	e := newTestEnv(t, nil)
	e.runPod(t, "p1", "batch", "burstable", nil)
	rel, err := e.startContainer(t, "c1", "p1", "app")
	if err != nil {
		t.Fatal(err)
	}
	e.runPod(t, "p2", "web", "besteffort", nil)
	if _, err := e.startContainer(t, "c2", "p2", "nginx"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.io_service_bytes"), []byte("254:0 Read 4096\n254:0 Write 8192\nTotal 12288\n"), 0o644)
	reports, err := e.svc.reporter.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Report{}
	for _, r := range reports {
		byID[r.ID] = r
	}
	c1, c2 := byID["c1"], byID["c2"]
	if !c1.Match || len(c1.Have) != 1 || c1.Have[0].WriteBPS != 1<<20 || c1.Error != "" {
		t.Errorf("c1 = %+v, want 1MiB/s read back and matching", c1)
	}
	if len(c1.Usage) != 1 || c1.Usage[0].WriteBytes != 8192 {
		t.Errorf("c1 usage = %+v, want 8192 bytes written", c1.Usage)
	}
	if !c2.Match || len(c2.Have) != 0 {
		t.Errorf("c2 = %+v, want nothing and matching", c2)
	}
	// Drift shows as a mismatch, read from the file rather than from memory.
	os.WriteFile(filepath.Join(e.host.mount, rel, "blkio.throttle.write_bps_device"), []byte("254:0 0"), 0o644)
	reports, _ = e.svc.reporter.Status(context.Background())
	for _, r := range reports {
		if r.ID == "c1" && r.Match {
			t.Errorf("c1 after drift = %+v, want a mismatch", r)
		}
	}
}
