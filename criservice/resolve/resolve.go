// Package resolve finds a container's cgroup path, and a pod's cgroup parent, by
// asking in turn the CRI runtime's verbose status, containerd's own API, Docker's
// inspect, and /proc/PID/cgroup of the container's init process.
package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
)

// Resolver finds the raw cgroup path of a container: a runtime cgroupsPath
// ("/kubepods/…/<id>" or "slice:prefix:id") or a path relative to the I/O
// controller's mount (from /proc/PID/cgroup). translate.CgroupDir takes both.
type Resolver interface {
	Name() string
	CgroupsPath(ctx context.Context, containerID string) (string, error)
}

// PodResolver is implemented by resolvers that can also find a pod's cgroup_parent.
type PodResolver interface {
	PodCgroupParent(ctx context.Context, sandboxID string) (string, error)
}

// chain tries resolvers in order; the first answer wins.
type chain []Resolver

func (c chain) Name() string {
	names := make([]string, len(c))
	for i, r := range c {
		names[i] = r.Name()
	}
	return strings.Join(names, ",")
}

func (c chain) CgroupsPath(ctx context.Context, id string) (string, error) {
	var errs []error
	for _, r := range c {
		path, err := r.CgroupsPath(ctx, id)
		if err == nil && path != "" {
			return path, nil
		}
		if errors.Is(err, ErrUnknownContainer) {
			return "", err
		}
		if err == nil {
			err = errors.New("empty cgroup path")
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.Name(), err))
	}
	return "", fmt.Errorf("%w: %s: %w", ErrNoCgroupsPath, id, errors.Join(errs...))
}

func (c chain) PodCgroupParent(ctx context.Context, sandboxID string) (string, error) {
	var errs []error
	for _, r := range c {
		if pr, ok := r.(PodResolver); ok {
			parent, err := pr.PodCgroupParent(ctx, sandboxID)
			if err == nil && parent != "" {
				return parent, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.Name(), err))
		}
	}
	return "", fmt.Errorf("%w: pod %s: %w", ErrNoPodCgroup, sandboxID, errors.Join(errs...))
}

// verboseInfo is the part of containerd's and CRI-O's verbose status we read.
type verboseInfo struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
		Root struct {
			Path string `json:"path"`
		} `json:"root"`
	} `json:"runtimeSpec"`
	Config struct {
		Linux struct {
			CgroupParent string `json:"cgroup_parent"`
		} `json:"linux"`
	} `json:"config"`
}

func parseVerboseInfo(info map[string]string) (verboseInfo, error) {
	var v verboseInfo
	raw, ok := info["info"]
	if !ok {
		return v, errors.New("verbose status has no \"info\"")
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return v, fmt.Errorf("decode verbose info: %w", err)
	}
	return v, nil
}

// criResolver asks the runtime itself: ContainerStatus{verbose} carries the OCI
// spec's linux.cgroupsPath on containerd and CRI-O.
type criResolver struct {
	rt runtimeapi.RuntimeServiceClient
}

func (criResolver) Name() string { return "cri" }

func (r criResolver) status(ctx context.Context, id string) (verboseInfo, error) {
	resp, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if status.Code(err) == codes.NotFound {
		return verboseInfo{}, fmt.Errorf("%w: %s", ErrUnknownContainer, id)
	}
	if err != nil {
		return verboseInfo{}, err
	}
	return parseVerboseInfo(resp.GetInfo())
}

func (r criResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	v, err := r.status(ctx, id)
	if err != nil {
		return "", err
	}
	if v.RuntimeSpec.Linux.CgroupsPath == "" {
		return "", errors.New("runtimeSpec.linux.cgroupsPath is empty")
	}
	return v.RuntimeSpec.Linux.CgroupsPath, nil
}

func (r criResolver) PodCgroupParent(ctx context.Context, sandboxID string) (string, error) {
	resp, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandboxID, Verbose: true})
	if err != nil {
		return "", err
	}
	v, err := parseVerboseInfo(resp.GetInfo())
	if err != nil {
		return "", err
	}
	if v.Config.Linux.CgroupParent == "" {
		return "", errors.New("config.linux.cgroup_parent is empty")
	}
	return v.Config.Linux.CgroupParent, nil
}

// procResolver reads /proc/PID/cgroup of the container's init process, whose
// PID comes from the runtime's verbose status (or a pid source of its own).
type procResolver struct {
	procRoot   string
	controller string // "blkio" on v1, "" for the v2 line
	pid        func(ctx context.Context, id string) (int, error)
}

func (procResolver) Name() string { return "proc" }

func (r procResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	pid, err := r.pid(ctx, id)
	if err != nil {
		return "", err
	}
	if pid <= 0 {
		return "", fmt.Errorf("container %s has no running process", id)
	}
	root := r.procRoot
	if root == "" {
		root = "/proc"
	}
	f, err := os.Open(filepath.Join(root, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	paths, err := cgroup.ParseProcCgroup(f)
	if err != nil {
		return "", err
	}
	path, ok := paths[r.controller]
	if !ok {
		return "", fmt.Errorf("/proc/%d/cgroup has no %q line", pid, r.controller)
	}
	return path, nil
}

func criPid(rt runtimeapi.RuntimeServiceClient) func(context.Context, string) (int, error) {
	return func(ctx context.Context, id string) (int, error) {
		v, err := criResolver{rt}.status(ctx, id)
		return v.Pid, err
	}
}
