package criservice

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func writeCgroupFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Where the runtime has no pod stats (cri-dockerd), criguard answers from the pod's
// cgroup files; any other error of the runtime stands.
func TestPodStatsFromCgroupFilesV1(t *testing.T) {
	root := t.TempDir()
	controllers := fakeControllers{"cpuacct": filepath.Join(root, "cpuacct"), "memory": filepath.Join(root, "memory"), "pids": filepath.Join(root, "pids")}
	e := newTestEnv(t, func(o *Options) { o.Controllers = controllers })
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	writeCgroupFiles(t, filepath.Join(controllers["cpuacct"], parent), map[string]string{"cpuacct.usage": "123456789\n"})
	writeCgroupFiles(t, filepath.Join(controllers["memory"], parent), map[string]string{"memory.usage_in_bytes": "10485760\n",
		"memory.stat": "cache 100\nrss 200\ntotal_rss 4194304\ntotal_inactive_file 1048576\n"})
	writeCgroupFiles(t, filepath.Join(controllers["pids"], parent), map[string]string{"pids.current": "3\n"})

	unimplemented := status.Error(codes.Unimplemented, "method ListPodSandboxStats not implemented")
	answer := e.hook("ListPodSandboxStats").Answer
	out, ok := answer(context.Background(), marshal(t, &runtimeapi.ListPodSandboxStatsRequest{}), unimplemented)
	if !ok {
		t.Fatal("no answer for an Unimplemented ListPodSandboxStats")
	}
	var resp runtimeapi.ListPodSandboxStatsResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Stats) != 1 {
		t.Fatalf("stats = %v, want one pod", resp.Stats)
	}
	st := resp.Stats[0]
	linux := st.GetLinux()
	if st.GetAttributes().GetId() != "p1" || st.GetAttributes().GetMetadata().GetNamespace() != "batch" {
		t.Errorf("attributes = %v", st.GetAttributes())
	}
	if got := linux.GetCpu().GetUsageCoreNanoSeconds().GetValue(); got != 123456789 || linux.GetCpu().GetTimestamp() == 0 {
		t.Errorf("cpu = %v", linux.GetCpu())
	}
	if got := linux.GetMemory(); got.GetWorkingSetBytes().GetValue() != 9<<20 || got.GetUsageBytes().GetValue() != 10<<20 || got.GetRssBytes().GetValue() != 4<<20 {
		t.Errorf("memory = %v", got)
	}
	if got := linux.GetProcess().GetProcessCount().GetValue(); got != 3 {
		t.Errorf("process count = %d", got)
	}

	one, ok := e.hook("PodSandboxStats").Answer(context.Background(), marshal(t, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "p1"}), unimplemented)
	var oneResp runtimeapi.PodSandboxStatsResponse
	if !ok || proto.Unmarshal(one, &oneResp) != nil || oneResp.GetStats().GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() != 123456789 {
		t.Errorf("PodSandboxStats answer = %v (%v)", &oneResp, ok)
	}
	for _, err := range []error{status.Error(codes.Unavailable, "down"), status.Error(codes.NotFound, "no such pod")} {
		if _, ok := answer(context.Background(), marshal(t, &runtimeapi.ListPodSandboxStatsRequest{}), err); ok {
			t.Errorf("the runtime's %v was replaced", err)
		}
	}
	if _, ok := e.hook("PodSandboxStats").Answer(context.Background(), marshal(t, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "gone"}), unimplemented); ok {
		t.Errorf("a pod the runtime does not know got stats")
	}
}

func TestPodStatsFromCgroupFilesV2(t *testing.T) {
	e := newTestEnv(t, nil)
	e.host = newFakeHostV2(t)
	e.svc.useIO(e.host.io)
	parent := e.runPod(t, "p1", "batch", "burstable", nil)
	writeCgroupFiles(t, filepath.Join(e.host.mount, parent), map[string]string{
		"cpu.stat": "usage_usec 5000\nuser_usec 4000\n", "memory.current": "8192\n", "memory.stat": "anon 4096\ninactive_file 4096\n",
		"pids.current": "2\n", "io.pressure": "some avg10=1.50 avg60=0.00 avg300=0.00 total=42\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"})
	out, ok := e.hook("ListPodSandboxStats").Answer(context.Background(), marshal(t, &runtimeapi.ListPodSandboxStatsRequest{
		Filter: &runtimeapi.PodSandboxStatsFilter{Id: "p1"}}), status.Error(codes.Unimplemented, ""))
	var resp runtimeapi.ListPodSandboxStatsResponse
	if !ok || proto.Unmarshal(out, &resp) != nil || len(resp.Stats) != 1 {
		t.Fatalf("answer = %v (%v)", &resp, ok)
	}
	linux := resp.Stats[0].GetLinux()
	if linux.GetCpu().GetUsageCoreNanoSeconds().GetValue() != 5000000 || linux.GetMemory().GetWorkingSetBytes().GetValue() != 4096 ||
		linux.GetProcess().GetProcessCount().GetValue() != 2 || linux.GetIo().GetPsi().GetSome().GetTotal() != 42 || linux.GetIo().GetPsi().GetSome().GetAvg10() != 1.5 {
		t.Errorf("v2 stats = %v", linux)
	}
}
