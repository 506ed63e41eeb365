package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RegistryInstance is Debian's docker-registry serving plain HTTP on 127.0.0.1, the
// offline stand-in for docker.io, registry.k8s.io and gcr.io.
type RegistryInstance struct {
	// Addr is host:port on the loopback.
	Addr string
	// MirroredHosts are the registry hosts a containerd WithRegistry resolves to Addr.
	MirroredHosts []string

	proc *process
}

// Registry starts a private registry on a free loopback port and registers its stop.
func Registry(t testing.TB) *RegistryInstance {
	t.Helper()
	RequireRoot(t)
	binary := LookPath(t, "docker-registry")
	runDir, dataDir := instanceDirs(t, "reg")
	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatalf("lab: registry port: %v", err)
	}
	configPath := filepath.Join(runDir, "config.yml")
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dataDir, "storage"), addr)
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatalf("lab: write %s: %v", configPath, err)
	}
	proc, err := startProcess("docker-registry", filepath.Join(dataDir, "registry.log"), []string{binary, "serve", configPath}, nil)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	r := &RegistryInstance{
		Addr:          addr,
		MirroredHosts: []string{"docker.io", "registry.k8s.io", "gcr.io", "criguard.test"},
		proc:          proc,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab: registry log tail:\n%s", proc.logTail(30))
		}
		proc.stop(5 * time.Second)
	})
	if err := waitForTCP(addr, proc, startTimeout); err != nil {
		t.Fatalf("lab: registry: %v", err)
	}
	return r
}

// Push copies an OCI layout tar into the registry as ref. The host part of ref (one
// of MirroredHosts) is dropped: the mirror serves every host's paths.
func (r *RegistryInstance) Push(t testing.TB, ociTar, ref string) {
	t.Helper()
	path := ref
	if host, rest, ok := strings.Cut(ref, "/"); ok && strings.ContainsAny(host, ".:") {
		path = rest
	}
	if !strings.Contains(path, "/") {
		path = "library/" + path // docker.io's implicit namespace
	}
	mustRun(t, LookPath(t, "skopeo"), "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
		"oci-archive:"+ociTar, "docker://"+r.Addr+"/"+path)
}

// freeLoopbackAddr asks the kernel for a free port on 127.0.0.1.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitForTCP waits until addr accepts connections or p exits.
func waitForTCP(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s (%v); log:\n%s", p.name, addr, p.waitErr, p.logTail(40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
