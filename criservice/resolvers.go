package criservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ResolverConfig chooses how container cgroups are found.
type ResolverConfig struct {
	// Mode is auto, cri, containerd, docker or proc. auto picks by the
	// runtime's Version reply.
	Mode                string
	Runtime             runtimeapi.RuntimeServiceClient
	ContainerdAddress   string
	ContainerdNamespace string
	DockerEndpoint      string
	ProcRoot            string
	// ProcController is the /proc/PID/cgroup controller holding I/O limits:
	// "blkio" on v1, "" on v2.
	ProcController string
	// Logger records which chain auto picked; nil discards.
	Logger *slog.Logger
}

// ResolverModes lists the values of ResolverConfig.Mode.
var ResolverModes = []string{"auto", "cri", "containerd", "docker", "proc"}

// NewResolver builds the resolver chain for cfg.Mode.
func NewResolver(cfg ResolverConfig) (Resolver, error) {
	if cfg.Mode == "auto" || cfg.Mode == "" {
		return &autoResolver{cfg: cfg}, nil
	}
	return buildChain(cfg, cfg.Mode)
}

func buildChain(cfg ResolverConfig, kind string) (chain, error) {
	cri := criResolver{cfg.Runtime}
	proc := procResolver{procRoot: cfg.ProcRoot, controller: cfg.ProcController, pid: criPid(cfg.Runtime)}
	switch kind {
	case "cri":
		return chain{cri}, nil
	case "containerd":
		if cfg.Mode == "containerd" {
			return chain{newContainerdResolver(cfg.ContainerdAddress, cfg.ContainerdNamespace)}, nil
		}
		return chain{cri, newContainerdResolver(cfg.ContainerdAddress, cfg.ContainerdNamespace), proc}, nil
	case "docker":
		d := newDockerResolver(cfg.DockerEndpoint)
		if cfg.Mode == "docker" {
			return chain{d}, nil
		}
		proc.pid = d.Pid
		return chain{d, proc}, nil
	case "proc":
		return chain{proc}, nil
	case "generic":
		return chain{cri, proc}, nil
	}
	return nil, fmt.Errorf("unknown resolver %q: want one of %s", kind, strings.Join(ResolverModes, ", "))
}

// autoResolver asks the runtime who it is on first use, and again until it answers.
type autoResolver struct {
	cfg   ResolverConfig
	mu    sync.Mutex
	chain chain
}

func (a *autoResolver) Name() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.chain == nil {
		return "auto"
	}
	return "auto(" + a.chain.Name() + ")"
}

func (a *autoResolver) resolve(ctx context.Context) (chain, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.chain != nil {
		return a.chain, nil
	}
	v, err := a.cfg.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return nil, fmt.Errorf("detect runtime: %w", err)
	}
	kind := RuntimeKind(v.RuntimeName)
	c, err := buildChain(a.cfg, kind)
	if err != nil {
		return nil, err
	}
	a.chain = c
	if a.cfg.Logger != nil {
		a.cfg.Logger.Info("runtime detected", "runtime", v.RuntimeName, "version", v.RuntimeVersion, "resolvers", c.Name())
	}
	return c, nil
}

// RuntimeKind maps a CRI RuntimeName to the resolver chain that serves it best.
func RuntimeKind(runtimeName string) string {
	switch name := strings.ToLower(runtimeName); {
	case strings.Contains(name, "containerd"):
		return "containerd"
	case strings.Contains(name, "docker"):
		return "docker"
	}
	return "generic"
}

func (a *autoResolver) CgroupsPath(ctx context.Context, id string) (string, error) {
	c, err := a.resolve(ctx)
	if err != nil {
		return "", err
	}
	return c.CgroupsPath(ctx, id)
}

func (a *autoResolver) PodCgroupParent(ctx context.Context, sandboxID string) (string, error) {
	c, err := a.resolve(ctx)
	if err != nil {
		return "", err
	}
	return c.PodCgroupParent(ctx, sandboxID)
}

func (c chain) Close() error {
	var errs []error
	for _, r := range c {
		if closer, ok := r.(interface{ Close() error }); ok {
			errs = append(errs, closer.Close())
		}
	}
	return errors.Join(errs...)
}

func (a *autoResolver) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chain.Close()
}
