package criservice

import (
	"context"
	"strconv"
	"strings"
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
func (s *Service) answerListPodSandboxStats(ctx context.Context, reqB []byte, callErr error) ([]byte, bool) {
	var req runtimeapi.ListPodSandboxStatsRequest
	if status.Code(callErr) != codes.Unimplemented || !s.decode("ListPodSandboxStats", reqB, &req) {
		return nil, false
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	filter := &runtimeapi.PodSandboxFilter{Id: req.GetFilter().GetId(), LabelSelector: req.GetFilter().GetLabelSelector(),
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}
	pods, err := s.opts.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, false
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{Stats: []*runtimeapi.PodSandboxStats{}}
	for _, p := range pods.Items {
		resp.Stats = append(resp.Stats, s.podStats(ctx, p))
	}
	out, err := proto.Marshal(resp)
	return out, err == nil
}

// answerPodSandboxStats answers an Unimplemented PodSandboxStats.
func (s *Service) answerPodSandboxStats(ctx context.Context, reqB []byte, callErr error) ([]byte, bool) {
	var req runtimeapi.PodSandboxStatsRequest
	if status.Code(callErr) != codes.Unimplemented || !s.decode("PodSandboxStats", reqB, &req) {
		return nil, false
	}
	ctx, cancel := s.detached(ctx)
	defer cancel()
	pods, err := s.opts.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: req.PodSandboxId}})
	if err != nil || len(pods.Items) == 0 {
		return nil, false // the runtime's own answer stands
	}
	out, err := proto.Marshal(&runtimeapi.PodSandboxStatsResponse{Stats: s.podStats(ctx, pods.Items[0])})
	return out, err == nil
}

// podStats reads one pod's usage from its cgroup, with its containers' stats as
// the runtime gives them. What cannot be read is left out, as runtimes do.
func (s *Service) podStats(ctx context.Context, p *runtimeapi.PodSandbox) *runtimeapi.PodSandboxStats {
	stats := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: p.Id, Metadata: p.Metadata, Labels: p.Labels, Annotations: p.Annotations},
		Linux:      &runtimeapi.LinuxPodSandboxStats{},
	}
	pod, err := s.lookupPod(ctx, p.Id)
	if err == nil && pod.CgroupParent == "" {
		pod.CgroupParent = s.podParentFromContainers(ctx, p.Id)
	}
	if err == nil && pod.CgroupParent != "" {
		s.fillPodUsage(stats.Linux, pod.CgroupParent, time.Now().UnixNano())
	}
	if cs, err := s.opts.Runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{
		Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: p.Id}}); err == nil {
		stats.Linux.Containers = cs.Stats
	}
	return stats
}

// fillPodUsage reads cpu, memory and pids (and io on v2) from the pod's cgroup.
func (s *Service) fillPodUsage(linux *runtimeapi.LinuxPodSandboxStats, parent string, now int64) {
	v2 := s.opts.IO.Version() == 2
	dirOf := func(controller string) string {
		mount := s.opts.IO.Mount()
		if !v2 {
			if s.opts.Controllers == nil {
				return ""
			}
			var ok bool
			if mount, ok = s.opts.Controllers.ControllerMount(controller); !ok {
				return ""
			}
		}
		dir, err := translate.PodCgroupDir(mount, parent)
		if err != nil || cgroup.CheckDir(mount, dir) != nil {
			return ""
		}
		return dir
	}
	if v2 {
		dir := dirOf("")
		if dir == "" {
			return
		}
		if usec, ok := keyedValue(dir, "cpu.stat", "usage_usec"); ok {
			linux.Cpu = &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: usec * 1000}}
		}
		linux.Memory = memoryUsage(dir, "memory.current", "inactive_file", "anon", now)
		if n, ok := fileValue(dir, "pids.current"); ok {
			linux.Process = &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: n}}
		}
		linux.Io = ioUsage(dir, now)
		return
	}
	if dir := dirOf("cpuacct"); dir != "" {
		if ns, ok := fileValue(dir, "cpuacct.usage"); ok {
			linux.Cpu = &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: ns}}
		}
	}
	if dir := dirOf("memory"); dir != "" {
		linux.Memory = memoryUsage(dir, "memory.usage_in_bytes", "total_inactive_file", "total_rss", now)
	}
	if dir := dirOf("pids"); dir != "" {
		if n, ok := fileValue(dir, "pids.current"); ok {
			linux.Process = &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: n}}
		}
	}
}

// memoryUsage is the kubelet's working set: usage less inactive file pages.
func memoryUsage(dir, usageFile, inactiveKey, rssKey string, now int64) *runtimeapi.MemoryUsage {
	usage, ok := fileValue(dir, usageFile)
	if !ok {
		return nil
	}
	inactive, _ := keyedValue(dir, "memory.stat", inactiveKey)
	rss, _ := keyedValue(dir, "memory.stat", rssKey)
	workingSet := usage - min(inactive, usage)
	return &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{Value: workingSet},
		UsageBytes: &runtimeapi.UInt64Value{Value: usage}, RssBytes: &runtimeapi.UInt64Value{Value: rss}}
}

// ioUsage is the pod's I/O pressure (io.pressure), the I/O figure CRI carries.
func ioUsage(dir string, now int64) *runtimeapi.IoUsage {
	content, err := cgroup.ReadFile(dir, "io.pressure")
	if err != nil {
		return nil
	}
	psi := &runtimeapi.PsiStats{}
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		data := &runtimeapi.PsiData{}
		for _, pair := range fields[1:] {
			key, value, _ := strings.Cut(pair, "=")
			f, _ := strconv.ParseFloat(value, 64)
			switch key {
			case "avg10":
				data.Avg10 = f
			case "avg60":
				data.Avg60 = f
			case "avg300":
				data.Avg300 = f
			case "total":
				data.Total, _ = strconv.ParseUint(value, 10, 64)
			}
		}
		switch fields[0] {
		case "some":
			psi.Some = data
		case "full":
			psi.Full = data
		}
	}
	return &runtimeapi.IoUsage{Timestamp: now, Psi: psi}
}

// fileValue reads a cgroup file holding one number.
func fileValue(dir, file string) (uint64, bool) {
	content, err := cgroup.ReadFile(dir, file)
	if err != nil {
		return 0, false
	}
	return limitValue(content)
}

// keyedValue reads one "key value" line of a flat-keyed cgroup file (memory.stat, cpu.stat).
func keyedValue(dir, file, key string) (uint64, bool) {
	content, err := cgroup.ReadFile(dir, file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
