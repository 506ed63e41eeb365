package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/internal/fakeruntime"
)

// fakeNode is a /proc and /sys whose blkio hierarchy lives in a temp dir.
type fakeNode struct {
	root, blkio string
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	root := t.TempDir()
	n := &fakeNode{root: root, blkio: filepath.Join(root, "cg", "blkio")}
	mustWrite(t, filepath.Join(root, "proc", "self", "mountinfo"),
		fmt.Sprintf("38 31 0:35 / %s rw,relatime shared:16 - cgroup cgroup rw,blkio\n", n.blkio))
	if err := os.MkdirAll(filepath.Join(root, "sys", "dev", "block", "254:0"), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// mkcgroup makes a cgroup with the throttle files the kernel would show.
func (n *fakeNode) mkcgroup(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.Join(n.blkio, rel)
	for _, f := range []string{"read_bps_device", "write_bps_device", "read_iops_device", "write_iops_device", "io_service_bytes", "io_serviced"} {
		mustWrite(t, filepath.Join(dir, "blkio.throttle."+f), "")
	}
	return dir
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func policyWithWriteBPS(bps string) string {
	return `rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "bulk"
}
class "bulk" {
  io {
    device    = "254:0"
    write_bps = "` + bps + `"
  }
}
`
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue finds one sample's value in a Prometheus text page.
func metricValue(t *testing.T, page, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The whole daemon, wired as in production, over a fake runtime and a fake
// cgroup tree: forwarding, throttling on start, metrics, readiness, reload.
func TestServeThrottlesReloadsAndCounts(t *testing.T) {
	node := newFakeNode(t)
	fake := fakeruntime.New()
	_, runtimeSock := fakeruntime.Serve(t, fake)
	cfg := fake.AddPod("p1", "batch", "pod", "burstable", nil)
	fake.AddContainer("c1", "p1", "app")
	// Created, not running: only StartContainer through criguard may throttle it.
	fake.Containers["c1"].State = runtimeapi.ContainerState_CONTAINER_CREATED
	dir := node.mkcgroup(t, fake.Paths["c1"])
	node.mkcgroup(t, cfg.Linux.CgroupParent)

	sockDir, err := os.MkdirTemp("", "cgs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	mustWrite(t, policyPath, policyWithWriteBPS("1MiB"))
	metricsAddr := freePort(t)
	listen := "unix://" + filepath.Join(sockDir, "criguard.sock")
	logs := &syncWriter{w: &strings.Builder{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveConfig{
			listen: listen, runtimeEndpoint: "unix://" + runtimeSock, socketMode: 0o660,
			shutdownGrace: time.Second, maxMsgSize: 16 << 20, policyPath: policyPath, resolver: "cri",
			reconcileInterval: time.Hour, applyTimeout: 2 * time.Second, metricsAddr: metricsAddr,
			procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys"),
		}, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
		if _, err := os.Stat(filepath.Join(sockDir, "criguard.sock")); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	eventually(t, "the socket", func() bool { _, err := os.Stat(filepath.Join(sockDir, "criguard.sock")); return err == nil })

	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	if v, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil || v.RuntimeName != "containerd" {
		t.Fatalf("Version through criguard: %v, %v", v, err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatalf("StartContainer through criguard: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "254:0 1048576" {
		t.Fatalf("write_bps after StartContainer = %q, want 254:0 1048576", got)
	}

	page := scrape(t, metricsAddr)
	for series, atLeast := range map[string]float64{
		`criguard_cri_calls_total{code="OK",method="StartContainer"}`:       1,
		`criguard_cri_calls_total{code="OK",method="Version"}`:              1,
		`criguard_cri_call_duration_seconds_count{method="StartContainer"}`: 1,
		`criguard_throttles_total{result="applied",scope="container"}`:      1,
		`criguard_policy_reloads_total{result="ok"}`:                        1,
		`criguard_policy_loaded`:                                            1,
		`criguard_apply_duration_seconds_count`:                             1,
	} {
		if got := metricValue(t, page, series); got < atLeast {
			t.Errorf("%s = %v, want >= %v", series, got, atLeast)
		}
	}
	eventually(t, "/readyz to say ready", func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// A good edit is followed by running containers.
	mustWrite(t, policyPath, policyWithWriteBPS("2MiB"))
	eventually(t, "the container to follow the edited policy", func() bool {
		return readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")) == "254:0 2097152"
	})
	// A broken edit changes nothing and is counted.
	mustWrite(t, policyPath, "rule \"batch\" {\n  clas = \"bulk\"\n")
	eventually(t, "the refused reload to be counted", func() bool {
		return metricValue(t, scrape(t, metricsAddr), `criguard_policy_reloads_total{result="error"}`) >= 1
	})
	if got := readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "254:0 2097152" {
		t.Errorf("a broken policy changed the limits to %q", got)
	}
	if !strings.Contains(logs.String(), "policy.hcl:") {
		t.Errorf("the refused reload's log does not name file:line: %s", logs.String())
	}
}

// A broken policy at start must not cut kubelet off the runtime: criguard
// forwards, throttles nothing, is unready, and takes the fix when it comes.
// With --fail-closed it refuses to start instead.
func TestServeStartsUnreadyOnABrokenPolicy(t *testing.T) {
	node := newFakeNode(t)
	fake := fakeruntime.New()
	_, runtimeSock := fakeruntime.Serve(t, fake)
	fake.AddPod("p1", "batch", "pod", "burstable", nil)
	fake.AddContainer("c1", "p1", "app")
	dir := node.mkcgroup(t, fake.Paths["c1"])
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	mustWrite(t, policyPath, "rule \"batch\" {\n")
	sockDir, err := os.MkdirTemp("", "cgs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	cfg := serveConfig{
		listen: "unix://" + filepath.Join(sockDir, "criguard.sock"), runtimeEndpoint: "unix://" + runtimeSock, socketMode: 0o660,
		shutdownGrace: time.Second, policyPath: policyPath, resolver: "cri", reconcileInterval: time.Hour,
		applyTimeout: 2 * time.Second, metricsAddr: freePort(t),
		procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys"),
	}
	logs := &syncWriter{w: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(logs, nil))

	closed := cfg
	closed.failClosed = true
	if err := serve(context.Background(), closed, log); err == nil || !strings.Contains(err.Error(), "policy.hcl:") {
		t.Fatalf("--fail-closed with a broken policy: %v, want a refusal naming file:line", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + cfg.metricsAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "/readyz to name the broken policy", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "policy not loaded") && strings.Contains(body, "policy.hcl:")
	})
	conn, err := grpc.NewClient(cfg.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("forwarding with a broken policy: %v", err)
	}
	mustWrite(t, policyPath, policyWithWriteBPS("1MiB"))
	eventually(t, "the fixed policy to throttle the running container", func() bool {
		return readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")) == "254:0 1048576"
	})
	eventually(t, "/readyz to be ready", func() bool { code, _ := readyz(); return code == http.StatusOK })
}

// A restart of criguard on a broken or empty policy keeps every limit: it runs the
// last good policy kept in the state dir, or, with none (or an empty one), keeps
// hands off. An empty rule set would reset them all.
func TestServeRestartOnABrokenPolicyKeepsLimits(t *testing.T) {
	for _, tc := range []struct {
		file     string
		lastGood string // kept: the state dir of the first run; none; empty: a 0-byte copy
	}{
		{file: "rule \"batch\" {\n", lastGood: "kept"},
		{file: "rule \"batch\" {\n", lastGood: "none"},
		{file: "rule \"batch\" {\n", lastGood: "empty"},
		{file: "", lastGood: "kept"},
		{file: "", lastGood: "none"},
		{file: "", lastGood: "empty"},
	} {
		keepState := tc.lastGood == "kept"
		t.Run(fmt.Sprintf("file %q last good %s", tc.file, tc.lastGood), func(t *testing.T) {
			node := newFakeNode(t)
			fake := fakeruntime.New()
			_, runtimeSock := fakeruntime.Serve(t, fake)
			fake.AddPod("p1", "batch", "pod", "burstable", nil)
			fake.AddContainer("c1", "p1", "app")
			dir := node.mkcgroup(t, fake.Paths["c1"])
			policyPath := filepath.Join(t.TempDir(), "policy.hcl")
			mustWrite(t, policyPath, policyWithWriteBPS("1MiB"))
			sockDir, err := os.MkdirTemp("", "cgs")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(sockDir)
			cfg := serveConfig{
				listen: "unix://" + filepath.Join(sockDir, "criguard.sock"), runtimeEndpoint: "unix://" + runtimeSock, socketMode: 0o660,
				shutdownGrace: time.Second, policyPath: policyPath, resolver: "cri", reconcileInterval: 50 * time.Millisecond,
				applyTimeout: 2 * time.Second, metricsAddr: freePort(t), stateDir: t.TempDir(),
				procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys"),
			}
			logs := &syncWriter{w: &strings.Builder{}}
			run := func(cfg serveConfig, while func()) {
				t.Helper()
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
				while()
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve returned %v", err)
				}
			}
			run(cfg, func() {
				eventually(t, "the reconcile loop to throttle the container", func() bool {
					return readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")) == "254:0 1048576"
				})
			})
			mustWrite(t, policyPath, tc.file)
			if !keepState {
				cfg.stateDir = t.TempDir()
			}
			if tc.lastGood == "empty" {
				mustWrite(t, filepath.Join(cfg.stateDir, lastGoodFile), "")
			}
			run(cfg, func() {
				eventually(t, "/readyz to name the broken policy", func() bool {
					resp, err := http.Get("http://" + cfg.metricsAddr + "/readyz")
					if err != nil {
						return false
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					want := "hands off"
					if keepState {
						want = "last good"
					}
					return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), want)
				})
				time.Sleep(300 * time.Millisecond) // several reconcile passes
			})
			if got := readFile(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "254:0 1048576" {
				t.Errorf("write_bps after a restart on policy %q = %q, want 254:0 1048576 kept", tc.file, got)
			}
			if t.Failed() {
				t.Log(logs.String())
			}
		})
	}
}
