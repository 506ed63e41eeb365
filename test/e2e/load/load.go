// Package load drives a kubelet-shaped CRI load through an endpoint and counts what
// fails: unary calls at a fixed rate, a container start at an interval with a check
// right after StartContainer returns, and one GetContainerEvents stream whose gaps are
// measured. The restart tests on this host (test/e2e) and the restart check on the
// cgroup v2 + systemd VM (test/v2node/criload) share it.
package load

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// shortStream: a stream that ends this soon after it was opened was still on the
// stopping criguard, so its gap belongs to the same restart.
const shortStream = 250 * time.Millisecond

// Dial connects as kubelet's CRI client does (k8s.io/cri-client): reconnect backoff
// from 100 ms to 3 s, 20 s to connect, fail-fast calls.
func Dial(endpoint string) (*grpc.ClientConn, error) {
	params := grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: 20 * time.Second}
	params.Backoff.BaseDelay = 100 * time.Millisecond
	params.Backoff.MaxDelay = 3 * time.Second
	return grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(params))
}

// Config is one load.
type Config struct {
	Client runtimeapi.RuntimeServiceClient
	// PodID and Pod: the sandbox the started containers join.
	PodID string
	Pod   *runtimeapi.PodSandboxConfig
	// Survivor is the container ContainerStatus asks about.
	Survivor string
	// NewContainer is the config of the i-th started container.
	NewContainer func(i int) *runtimeapi.ContainerConfig
	// Check runs right after StartContainer returns; an error counts the start as
	// unthrottled.
	Check func(ctx context.Context, containerID string) error
	// UnaryRate is calls/s, ListPodSandbox, ListContainers and ContainerStatus in turn.
	UnaryRate  int
	StartEvery time.Duration
	// RemoveStarted stops and removes each container after its check, so that a small
	// node does not fill up.
	RemoveStarted bool
}

// Report is what the load saw.
type Report struct {
	UnaryCalls, UnaryFailed           int64
	Starts, StartsFailed, Unthrottled int64
	Events, SubscribeFailed           int64
	// Gaps: from an event stream's end to the next stream opened.
	Gaps []time.Duration
	// StreamEnds: how streams ended, by status code.
	StreamEnds map[codes.Code]int

	mu       sync.Mutex
	failLogs map[string]int // error text → count
}

// Run drives the load until ctx is done and returns what it saw.
func Run(ctx context.Context, cfg Config) *Report {
	r := &Report{StreamEnds: map[codes.Code]int{}, failLogs: map[string]int{}}
	var wg sync.WaitGroup
	wg.Go(func() { r.unary(ctx, cfg) })
	wg.Go(func() { r.starts(ctx, cfg) })
	wg.Go(func() { r.eventStream(ctx, cfg.Client) })
	wg.Wait()
	return r
}

func (r *Report) fail(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := what
	if err != nil {
		key += ": " + status.Code(err).String() + " " + status.Convert(err).Message()
	}
	r.failLogs[key]++
}

// Failures lists every distinct failure with its count, "" when none.
func (r *Report) Failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for k, n := range r.failLogs {
		lines = append(lines, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// MaxGap is the longest event-stream gap.
func (r *Report) MaxGap() time.Duration {
	var m time.Duration
	for _, g := range r.Gaps {
		m = max(m, g)
	}
	return m
}

// unary calls at cfg.UnaryRate, each call in its own goroutine so that a call held up
// by a restart does not slow the rate.
func (r *Report) unary(ctx context.Context, cfg Config) {
	ticker := time.NewTicker(time.Second / time.Duration(cfg.UnaryRate))
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
				_, err = cfg.Client.ListPodSandbox(callCtx, &runtimeapi.ListPodSandboxRequest{})
			case "ListContainers":
				_, err = cfg.Client.ListContainers(callCtx, &runtimeapi.ListContainersRequest{
					Filter: &runtimeapi.ContainerFilter{PodSandboxId: cfg.PodID}})
			case "ContainerStatus":
				_, err = cfg.Client.ContainerStatus(callCtx, &runtimeapi.ContainerStatusRequest{ContainerId: cfg.Survivor})
			}
			atomic.AddInt64(&r.UnaryCalls, 1)
			if err != nil {
				atomic.AddInt64(&r.UnaryFailed, 1)
				r.fail(method, err)
			}
		})
	}
}

// starts creates and starts a container every cfg.StartEvery (one at a time: a slow
// start delays the next) and checks it right after StartContainer returns.
func (r *Report) starts(ctx context.Context, cfg Config) {
	ticker := time.NewTicker(cfg.StartEvery)
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		r.Starts++
		callCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		created, err := cfg.Client.CreateContainer(callCtx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: cfg.PodID, Config: cfg.NewContainer(i), SandboxConfig: cfg.Pod})
		if err == nil {
			_, err = cfg.Client.StartContainer(callCtx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId})
		}
		if err != nil {
			cancel()
			r.StartsFailed++
			r.fail("create+start", err)
			continue
		}
		if err := cfg.Check(callCtx, created.ContainerId); err != nil {
			r.Unthrottled++
			r.fail("unthrottled start", err)
		}
		if cfg.RemoveStarted {
			// Not counted: cleanup, not kubelet's load.
			_, _ = cfg.Client.StopContainer(callCtx, &runtimeapi.StopContainerRequest{ContainerId: created.ContainerId})
			_, _ = cfg.Client.RemoveContainer(callCtx, &runtimeapi.RemoveContainerRequest{ContainerId: created.ContainerId})
		}
		cancel()
	}
}

// eventStream keeps one GetContainerEvents subscription, as kubelet's evented PLEG
// does, and measures each gap: from a stream's end to the next stream opened. Streams
// that end within shortStream of opening extend the gap they were opened in.
func (r *Report) eventStream(ctx context.Context, client runtimeapi.RuntimeServiceClient) {
	var gapStart time.Time // zero while subscribed
	var pending time.Duration
	for ctx.Err() == nil {
		stream, err := client.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
		if err != nil {
			if ctx.Err() == nil {
				atomic.AddInt64(&r.SubscribeFailed, 1)
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
			atomic.AddInt64(&r.Events, 1)
		}
		if ctx.Err() != nil {
			break
		}
		r.mu.Lock()
		r.StreamEnds[status.Code(err)]++
		r.mu.Unlock()
		ended := time.Now()
		if ended.Sub(opened) >= shortStream || gapStart.IsZero() {
			if !gapStart.IsZero() {
				r.Gaps = append(r.Gaps, pending)
				pending = 0
			}
			gapStart = ended
		}
	}
	if !gapStart.IsZero() && pending > 0 {
		r.Gaps = append(r.Gaps, pending)
	}
}

// Spread is "min X / median Y / max Z" of ds.
func Spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("min %s / median %s / max %s", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

// Row is the report as one Markdown table row of docs/BENCHMARKS.md's restart table.
func (r *Report) Row(mode string, restartTimes []time.Duration) string {
	return fmt.Sprintf("| %s | %d | %d / %d | %d / %d / %d | %d, %s | %s |\n", mode, len(restartTimes),
		r.UnaryFailed, r.UnaryCalls, r.StartsFailed, r.Unthrottled, r.Starts, len(r.Gaps), Spread(r.Gaps), Spread(restartTimes))
}
