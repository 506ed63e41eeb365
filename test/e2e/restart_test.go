//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// The restart scenario of issue 13: a kubelet-like load through criguard while it is
// restarted ten times.
const (
	restarts        = 10
	betweenRestarts = 3 * time.Second
	unaryRate       = 50 // calls/s, ListPodSandbox, ListContainers, ContainerStatus in turn
	startEvery      = time.Second
	// A stream that ends this soon after it was opened was still on the stopping
	// criguard: its gap belongs to the same restart.
	shortStream = 250 * time.Millisecond
)

// TestRestartUnderLoadSocketActivated restarts criguard behind a socket held as systemd's
// criguard.socket would hold it: no call may fail, every start must be throttled, and
// the event stream must be back within a second of each restart.
func TestRestartUnderLoadSocketActivated(t *testing.T) {
	r := runRestarts(t, true, false)
	if r.unaryFailed > 0 {
		t.Errorf("%d of %d unary calls failed across %d restarts, want 0: %s", r.unaryFailed, r.unaryCalls, restarts, r.failures())
	}
	if r.startsFailed > 0 || r.unthrottled > 0 {
		t.Errorf("of %d starts %d failed and %d were left unthrottled, want 0 and 0: %s", r.starts, r.startsFailed, r.unthrottled, r.failures())
	}
	if r.maxGap() > time.Second {
		t.Errorf("event stream gaps %v, want each within 1s", r.gaps)
	}
	for code, n := range r.streamEnds {
		if code != codes.Unavailable {
			t.Errorf("%d event streams ended with %s, want Unavailable (kubelet re-subscribes on it)", n, code)
		}
	}
	if len(r.gaps) < restarts {
		t.Errorf("%d event-stream gaps for %d restarts: the stream did not end with each restart", len(r.gaps), restarts)
	}
}

// TestRestartUnderLoadPlain is the same without socket activation, for comparison: criguard
// unlinks and binds its socket on each restart. Its counts are reported, not asserted.
func TestRestartUnderLoadPlain(t *testing.T) {
	r := runRestarts(t, false, false)
	if r.starts == 0 || r.unaryCalls == 0 {
		t.Fatalf("no load ran")
	}
}

// TestRestartUnderLoadCrashSocketActivated kills criguard (SIGKILL, as a crash or the
// OOM killer would) behind the held socket, and starts it again. Calls in flight on the
// killed process fail; later ones wait on the socket. Reported, not asserted.
func TestRestartUnderLoadCrashSocketActivated(t *testing.T) {
	r := runRestarts(t, true, true)
	if r.starts == 0 || r.unaryCalls == 0 {
		t.Fatalf("no load ran")
	}
}

// restartReport is what the load saw.
type restartReport struct {
	mode                              string
	elapsed                           time.Duration
	restartTimes                      []time.Duration // signal to serving again
	unaryCalls, unaryFailed           int64
	starts, startsFailed, unthrottled int64
	events, subscribeFailed           int64
	gaps                              []time.Duration
	streamEnds                        map[codes.Code]int // how streams ended, restarts and all

	mu       sync.Mutex
	failLogs map[string]int // error text → count
}

func (r *restartReport) fail(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := what
	if err != nil {
		key += ": " + status.Code(err).String() + " " + status.Convert(err).Message()
	}
	r.failLogs[key]++
}

func (r *restartReport) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for k, n := range r.failLogs {
		lines = append(lines, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

func (r *restartReport) maxGap() time.Duration {
	var m time.Duration
	for _, g := range r.gaps {
		m = max(m, g)
	}
	return m
}

// kubeletClient dials as kubelet's CRI client does (k8s.io/cri-client): reconnect
// backoff from 100 ms to 3 s, 20 s to connect, fail-fast calls.
func kubeletClient(t *testing.T, endpoint string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	params := grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: 20 * time.Second}
	params.Backoff.BaseDelay = 100 * time.Millisecond
	params.Backoff.MaxDelay = 3 * time.Second
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(params))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

func runRestarts(t *testing.T, activated, crash bool) *restartReport {
	ctrd := lab.Containerd(t, lab.WithContainerd2())
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, restartPolicy(ctrd.Root))
	args := []string{"--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--log-level", "info", "--reconcile-interval", "1h"}
	start := lab.Criguard
	r := &restartReport{mode: "plain (criguard binds its socket)", failLogs: map[string]int{}, streamEnds: map[codes.Code]int{}}
	if activated {
		start = lab.CriguardActivated
		r.mode = "socket-activated (systemd-socket-activate)"
	}
	if crash {
		r.mode += ", SIGKILL"
	}
	cg := start(t, ctrd.Endpoint, args...)
	ep := cg.Endpoint
	client := kubeletClient(t, ep)

	pod := lab.NewPod(t, "restarts", "throttled-restart")
	podID := lab.RunPod(t, ep, pod)
	podDir := lab.BlkioDir(t, pod.CgroupParent())
	survivor := lab.StartContainer(t, ep, podID, pod, sleeper("survivor"))

	ctx, cancel := context.WithCancel(context.Background())
	var load sync.WaitGroup
	load.Go(func() { r.unaryLoad(ctx, client, podID, survivor) })
	load.Go(func() { r.startLoad(ctx, client, podID, pod, podDir, dev) })
	load.Go(func() { r.eventStream(ctx, client) })

	began := time.Now()
	time.Sleep(betweenRestarts)
	for range restarts {
		stopped := time.Now()
		if crash {
			cg.Kill(t)
			cg.Start(t)
		} else {
			cg.Restart(t)
		}
		r.restartTimes = append(r.restartTimes, time.Since(stopped))
		time.Sleep(betweenRestarts)
	}
	cancel()
	load.Wait()
	r.elapsed = time.Since(began)

	t.Logf("%s: %d restarts in %s; restart (signal to serving) %s", r.mode, restarts,
		r.elapsed.Round(time.Second), spread(r.restartTimes))
	t.Logf("unary calls: %d, failed %d", r.unaryCalls, r.unaryFailed)
	t.Logf("container starts: %d, failed %d, unthrottled %d", r.starts, r.startsFailed, r.unthrottled)
	t.Logf("event stream: %d gaps %s, %d failed subscribe attempts, %d events; ends %v", len(r.gaps), spread(r.gaps), r.subscribeFailed, r.events, r.streamEnds)
	if f := r.failures(); f != "" {
		t.Logf("failures: %s", f)
	}
	writeRestartReport(t, r)
	return r
}

// restartPolicy is the scenario: one write_bps limit, on the disk under
// containerd's root, for the load's namespace.
func restartPolicy(devicePath string) string {
	return fmt.Sprintf(`device "data" {
  path = %q
}

class "slow" {
  io {
    device    = "data"
    write_bps = "1MiB"
  }
}

rule "throttled" {
  match {
    namespaces = ["throttled-*"]
  }
  class = "slow"
}
`, devicePath)
}

func sleeper(name string) *lab.Container {
	// PID 1 traps SIGTERM, so the pod's cleanup does not wait out a grace period.
	return &lab.Container{Name: name, Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}}
}

// unaryLoad calls at unaryRate, each call in its own goroutine so that a call held up
// by a restart does not slow the rate.
func (r *restartReport) unaryLoad(ctx context.Context, client runtimeapi.RuntimeServiceClient, podID, containerID string) {
	ticker := time.NewTicker(time.Second / unaryRate)
	defer ticker.Stop()
	var calls sync.WaitGroup
	defer calls.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		calls.Go(func() {
			callCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var err error
			method := []string{"ListPodSandbox", "ListContainers", "ContainerStatus"}[i%3]
			switch method {
			case "ListPodSandbox":
				_, err = client.ListPodSandbox(callCtx, &runtimeapi.ListPodSandboxRequest{})
			case "ListContainers":
				_, err = client.ListContainers(callCtx, &runtimeapi.ListContainersRequest{
					Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
			case "ContainerStatus":
				_, err = client.ContainerStatus(callCtx, &runtimeapi.ContainerStatusRequest{ContainerId: containerID})
			}
			atomic.AddInt64(&r.unaryCalls, 1)
			if err != nil {
				atomic.AddInt64(&r.unaryFailed, 1)
				r.fail(method, err)
			}
		})
	}
}

// startLoad creates and starts a container every startEvery, and reads its write
// limit back right after StartContainer returns: criguard promises it is in place by then.
func (r *restartReport) startLoad(ctx context.Context, client runtimeapi.RuntimeServiceClient, podID string, pod *lab.Pod, podDir, dev string) {
	ticker := time.NewTicker(startEvery)
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		r.starts++
		callCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		created, err := client.CreateContainer(callCtx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: podID, Config: sleeper(fmt.Sprintf("c%d", i)).Config(), SandboxConfig: pod.Config()})
		if err == nil {
			_, err = client.StartContainer(callCtx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId})
		}
		cancel()
		if err != nil {
			r.startsFailed++
			r.fail("create+start", err)
			continue
		}
		got, err := lab.Throttle(filepath.Join(podDir, created.ContainerId), writeBPSFile, dev)
		if err != nil || got != 1*mib {
			r.unthrottled++
			r.fail(fmt.Sprintf("unthrottled start (%s %s = %d)", writeBPSFile, dev, got), err)
		}
	}
}

// eventStream keeps one GetContainerEvents subscription, as kubelet's evented PLEG
// does, and measures each gap: from a stream's end to the next stream opened. Streams
// that end within shortStream of opening extend the gap they were opened in.
func (r *restartReport) eventStream(ctx context.Context, client runtimeapi.RuntimeServiceClient) {
	var gapStart time.Time // zero while subscribed
	var pending time.Duration
	for ctx.Err() == nil {
		stream, err := client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
		if err != nil {
			if ctx.Err() == nil {
				atomic.AddInt64(&r.subscribeFailed, 1)
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		opened := time.Now()
		if !gapStart.IsZero() {
			pending = opened.Sub(gapStart)
		}
		for {
			if _, err = stream.Recv(); err != nil {
				break
			}
			atomic.AddInt64(&r.events, 1)
		}
		if ctx.Err() != nil {
			break
		}
		r.streamEnds[status.Code(err)]++
		ended := time.Now()
		if ended.Sub(opened) >= shortStream || gapStart.IsZero() {
			if !gapStart.IsZero() {
				r.gaps = append(r.gaps, pending)
				pending = 0
			}
			gapStart = ended
		}
	}
	if !gapStart.IsZero() && pending > 0 {
		r.gaps = append(r.gaps, pending)
	}
}

// spread is "min/median/max" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("min %s / median %s / max %s", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

// writeRestartReport appends the run's figures to $RESTART_REPORT, when set, as one
// Markdown table row for docs/BENCHMARKS.md.
func writeRestartReport(t *testing.T, r *restartReport) {
	path := os.Getenv("RESTART_REPORT")
	if path == "" {
		return
	}
	row := fmt.Sprintf("| %s | %d | %d / %d | %d / %d / %d | %d, %s | %s |\n", r.mode, restarts,
		r.unaryFailed, r.unaryCalls, r.startsFailed, r.unthrottled, r.starts, len(r.gaps), spread(r.gaps), spread(r.restartTimes))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("restart report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(row); err != nil {
		t.Errorf("restart report: %v", err)
	}
}
