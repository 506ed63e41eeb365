package criservice

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/translate"
)

// Pod stats for a runtime that has none (cri-dockerd answers ListPodSandboxStats
// and PodSandboxStats with Unimplemented): criguard answers from the pod's cgroup
// files instead. Every other answer of the runtime, errors included, passes as it is.

// answerListPodSandboxStats answers an Unimplemented ListPodSandboxStats.
func (f *criFront) answerListPodSandboxStats(ctx context.Context, reqB []byte, callErr error) ([]byte, bool) {
	var req runtimeapi.ListPodSandboxStatsRequest
	if status.Code(callErr) != codes.Unimplemented || !f.decode("ListPodSandboxStats", reqB, &req) {
		return nil, false
	}
	ctx, cancel := f.engine.detached(ctx)
	defer cancel()
	filter := &runtimeapi.PodSandboxFilter{Id: req.GetFilter().GetId(), LabelSelector: req.GetFilter().GetLabelSelector(),
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}
	pods, err := f.store.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, false
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{}}
	for _, p := range pods.Items {
		resp.Stats = append(resp.Stats, f.podStats(ctx, p))
	}
	out, err := proto.Marshal(resp)
	return out, err == nil
}

// answerPodSandboxStats answers an Unimplemented PodSandboxStats.
func (f *criFront) answerPodSandboxStats(ctx context.Context, reqB []byte, callErr error) ([]byte, bool) {
	var req runtimeapi.PodSandboxStatsRequest
	if status.Code(callErr) != codes.Unimplemented || !f.decode("PodSandboxStats", reqB, &req) {
		return nil, false
	}
	ctx, cancel := f.engine.detached(ctx)
	defer cancel()
	pods, err := f.store.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: req.PodSandboxId}})
	if err != nil || len(pods.Items) == 0 {
		return nil, false // the runtime's own answer stands
	}
	out, err := proto.Marshal(&runtimeapi.PodSandboxStatsResponse{Stats: f.podStats(ctx, pods.Items[0])})
	return out, err == nil
}

// podStats reads one pod's usage from its cgroup, with its containers' stats as
// the runtime gives them. What cannot be read is left out, as runtimes do.
func (f *criFront) podStats(ctx context.Context, p *runtimeapi.PodSandbox) *runtimeapi.PodSandboxStats {
	stats := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: p.Id, Metadata: p.Metadata, Labels: p.Labels, Annotations: p.Annotations},
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	pod, err := f.store.lookupPod(ctx, p.Id)
	if err == nil && pod.CgroupParent == "" {
		pod.CgroupParent = f.store.podParentFromContainers(ctx, p.Id)
	}
	if err == nil && pod.CgroupParent != "" {
		f.fillPodUsage(stats.Linux, pod.CgroupParent, time.Now().UnixNano())
	}
	if cs, err := f.store.runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{
		Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: p.Id}}); err == nil {
		stats.Linux.Containers = cs.Stats
	}
	return stats
}

// fillPodUsage reads cpu, memory and pids (and io pressure on v2) from the pod's cgroup.
func (f *criFront) fillPodUsage(linux *runtimeapi.LinuxPodSandboxStats, parent string, now int64) {
	u := cgroup.ReadUsage(f.io, f.controllers, func(mount string) string {
		dir, err := translate.PodCgroupDir(mount, parent)
		if err != nil || cgroup.CheckDir(mount, dir) != nil {
			return ""
		}
		return dir
	})
	if u.CPUNanos != nil {
		linux.Cpu = &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: *u.CPUNanos}}
	}
	if m := u.Memory; m != nil {
		linux.Memory = &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{Value: m.WorkingSet},
			UsageBytes: &runtimeapi.UInt64Value{Value: m.Usage}, RssBytes: &runtimeapi.UInt64Value{Value: m.RSS}}
	}
	if u.Processes != nil {
		linux.Process = &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: *u.Processes}}
	}
	if p := u.IOPressure; p != nil {
		linux.Io = &runtimeapi.IoUsage{Timestamp: now, Psi: &runtimeapi.PsiStats{Some: psiData(p.Some), Full: psiData(p.Full)}}
	}
}

func psiData(l cgroup.PressureLine) *runtimeapi.PsiData {
	return &runtimeapi.PsiData{Avg10: l.Avg10, Avg60: l.Avg60, Avg300: l.Avg300, Total: uint64(l.Total.Microseconds())}
}
