package resolve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/internal/fakeruntime"
)

func TestProcResolverReadsInitCgroup(t *testing.T) {
	procRoot := t.TempDir()
	os.MkdirAll(filepath.Join(procRoot, "4242"), 0o755)
	os.WriteFile(filepath.Join(procRoot, "4242", "cgroup"), []byte(
		"12:blkio:/kubepods/burstable/podX/abc\n1:name=systemd:/kubepods/burstable/podX/abc\n0::/\n"), 0o644)
	r := procResolver{procRoot: procRoot, controller: "blkio", pid: func(context.Context, string) (int, error) { return 4242, nil }}
	got, err := r.CgroupsPath(context.Background(), "abc")
	if err != nil || got != "/kubepods/burstable/podX/abc" {
		t.Fatalf("got %q, %v", got, err)
	}
	r.pid = func(context.Context, string) (int, error) { return 0, nil }
	if _, err := r.CgroupsPath(context.Background(), "abc"); err == nil {
		t.Fatal("a container without a process resolved")
	}
}

func TestChainFallsThroughAndStopsOnUnknown(t *testing.T) {
	failing := resolverFunc{"a", func(string) (string, error) { return "", errors.New("no spec") }}
	ok := resolverFunc{"b", func(string) (string, error) { return "/k8s.io/x", nil }}
	gone := resolverFunc{"c", func(id string) (string, error) { return "", fmt.Errorf("%w: %s", ErrUnknownContainer, id) }}
	if got, err := (chain{failing, ok}).CgroupsPath(context.Background(), "x"); err != nil || got != "/k8s.io/x" {
		t.Errorf("fallthrough: %q, %v", got, err)
	}
	_, err := (chain{failing, failing}).CgroupsPath(context.Background(), "x")
	if !errors.Is(err, ErrNoCgroupsPath) || !strings.Contains(err.Error(), "no spec") {
		t.Errorf("all fail: %v, want ErrNoCgroupsPath with each reason", err)
	}
	if _, err := (chain{gone, ok}).CgroupsPath(context.Background(), "x"); !errors.Is(err, ErrUnknownContainer) {
		t.Errorf("unknown container: %v", err)
	}
}

type resolverFunc struct {
	name string
	fn   func(string) (string, error)
}

func (r resolverFunc) Name() string { return r.name }
func (r resolverFunc) CgroupsPath(_ context.Context, id string) (string, error) {
	return r.fn(id)
}

func TestAutoResolverPicksByRuntimeName(t *testing.T) {
	for name, want := range map[string]string{"containerd": "cri,containerd,proc", "docker": "docker,proc", "cri-o": "cri,proc"} {
		f := fakeruntime.New()
		f.Name = name
		rt, _ := fakeruntime.Serve(t, f)
		r, err := New(Config{Mode: "auto", Runtime: rt, DockerEndpoint: "unix:///nonexistent.sock"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r.(*autoResolver).resolve(ctx)
		cancel()
		if got := r.Name(); got != "auto("+want+")" {
			t.Errorf("runtime %q: resolver %q, want auto(%s)", name, got, want)
		}
	}
	if _, err := New(Config{Mode: "magic"}); err == nil {
		t.Error("unknown resolver mode accepted")
	}
}
