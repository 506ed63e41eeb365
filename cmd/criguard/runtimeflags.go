package main

import (
	"flag"
	"strings"
	"time"

	"github.com/criguard/criguard/criservice/resolve"
)

// addRuntimeFlags registers the flags serve, explain and status share, so the
// standalone commands find cgroups exactly as the daemon does.
func addRuntimeFlags(fs *flag.FlagSet, cfg *serveConfig) {
	fs.StringVar(&cfg.runtimeEndpoint, "runtime-endpoint", "unix:///run/containerd/containerd.sock", "the container runtime's CRI socket")
	fs.StringVar(&cfg.policyPath, "policy", "/etc/criguard/policy.hcl", "policy file (missing: forward only)")
	fs.StringVar(&cfg.resolver, "resolver", "auto", "how container cgroups are found: "+strings.Join(resolve.Modes, ", "))
	fs.StringVar(&cfg.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd API socket (containerd resolver)")
	fs.StringVar(&cfg.containerdNS, "containerd-namespace", "k8s.io", "containerd namespace of CRI containers")
	fs.StringVar(&cfg.stateDir, "state-dir", "/var/lib/criguard", "where criguard keeps the record of the limits it wrote and the last good policy")
	fs.StringVar(&cfg.dockerEndpoint, "docker-endpoint", "unix:///var/run/docker.sock", "Docker API endpoint (docker resolver, behind cri-dockerd)")
}

// addReconcileFlags registers the flags of the reconcile passes serve and nri run.
func addReconcileFlags(fs *flag.FlagSet, cfg *serveConfig) {
	fs.DurationVar(&cfg.reconcileInterval, "reconcile-interval", 30*time.Second, "how often running containers are compared with the policy and fixed")
	fs.DurationVar(&cfg.readBackMaxAge, "read-back-max-age", 5*time.Minute, "the longest a pass trusts limits it read back and inotify saw no write to; a write by another is read again within a second (0: every pass reads every cgroup's limits)")
}
