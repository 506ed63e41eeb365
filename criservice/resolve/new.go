package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config chooses how container cgroups are found.
type Config struct {
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
	// Timeout bounds the calls a resolver shares among its callers (runtime
	// detection, connecting to dockerd or containerd); 0 is 5s.
	Timeout time.Duration
}

// Modes lists the values of Config.Mode.
var Modes = []string{"auto", "cri", "containerd", "docker", "proc"}

// New builds the resolver chain for cfg.Mode.
func New(cfg Config) (Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultSharedTimeout
	}
	if cfg.Mode == "auto" || cfg.Mode == "" {
		return &autoResolver{cfg: cfg}, nil
	}
	return buildChain(cfg, cfg.Mode)
}

func buildChain(cfg Config, kind string) (chain, error) {
	cri := criResolver{cfg.Runtime}
	// The pid is in the CRI verbose status: the last resort must not fail for the
	// same reason (a wrong --docker-endpoint, say) as the resolvers before it.
	proc := procResolver{procRoot: cfg.ProcRoot, controller: cfg.ProcController, pid: criPid(cfg.Runtime)}
	switch kind {
	case "cri":
		return chain{cri}, nil
	case "containerd":
		if cfg.Mode == "containerd" {
			return chain{newContainerdResolver(cfg.ContainerdAddress, cfg.ContainerdNamespace, cfg.Timeout)}, nil
		}
		return chain{cri, newContainerdResolver(cfg.ContainerdAddress, cfg.ContainerdNamespace, cfg.Timeout), proc}, nil
	case "docker":
		d := newDockerResolver(cfg.DockerEndpoint, cfg.Timeout)
		if cfg.Mode == "docker" {
			return chain{d}, nil
		}
		proc.pid = firstPid(criPid(cfg.Runtime), d.Pid)
		return chain{d, proc}, nil
	case "proc":
		return chain{proc}, nil
	case "generic":
		return chain{cri, proc}, nil
	}
	return nil, fmt.Errorf("unknown resolver %q: want one of %s", kind, strings.Join(Modes, ", "))
}

// autoResolver asks the runtime who it is on first use, and again until it answers.
// Concurrent first uses share one Version call, and none holds a lock across it: a
// runtime that hangs costs each caller its own deadline, nothing more.
type autoResolver struct {
	cfg    Config
	chain  atomic.Pointer[chain]
	detect singleflight.Group
}

const defaultSharedTimeout = 5 * time.Second

func (a *autoResolver) Name() string {
	if c := a.chain.Load(); c != nil {
		return "auto(" + c.Name() + ")"
	}
	return "auto"
}

func (a *autoResolver) resolve(ctx context.Context) (chain, error) {
	if c := a.chain.Load(); c != nil {
		return *c, nil
	}
	return sharedCall(ctx, &a.detect, "version", func() (chain, error) {
		// Not the first caller's context: its cancel must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Timeout)
		defer cancel()
		v, err := a.cfg.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			return nil, fmt.Errorf("detect runtime: %w", err)
		}
		kind := RuntimeKind(v.RuntimeName)
		c, err := buildChain(a.cfg, kind)
		if err != nil {
			return nil, err
		}
		a.chain.Store(&c)
		if a.cfg.Logger != nil {
			a.cfg.Logger.Info("runtime detected", "runtime", v.RuntimeName, "version", v.RuntimeVersion, "resolvers", c.Name())
		}
		return c, nil
	})
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
	if c := a.chain.Load(); c != nil {
		return c.Close()
	}
	return nil
}

// firstPid asks each pid source in turn.
func firstPid(sources ...func(context.Context, string) (int, error)) func(context.Context, string) (int, error) {
	return func(ctx context.Context, id string) (int, error) {
		var errs []error
		for _, pid := range sources {
			n, err := pid(ctx, id)
			if err == nil && n > 0 {
				return n, nil
			}
			errs = append(errs, err)
		}
		return 0, errors.Join(errs...)
	}
}

// sharedCall runs fn once for every caller that asks for key meanwhile, detached
// from any one caller's cancel; each caller waits only as long as its own context
// allows, and no lock is held across the call.
func sharedCall[T any](ctx context.Context, g *singleflight.Group, key string, fn func() (T, error)) (T, error) {
	result := g.DoChan(key, func() (any, error) { return fn() })
	select {
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	case r := <-result:
		if r.Err != nil {
			var zero T
			return zero, r.Err
		}
		return r.Val.(T), nil
	}
}
