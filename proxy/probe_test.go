package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// holdingRuntime answers Version at once, or, while held, not until the caller gives up.
type holdingRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	held atomic.Bool
}

func (r *holdingRuntime) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	if r.held.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &runtimeapi.VersionResponse{RuntimeName: "holding"}, nil
}

// serveRuntime serves rt on sock until the returned stop is called; stop removes the socket.
func serveRuntime(t testing.TB, sock string, rt runtimeapi.RuntimeServiceServer) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, rt)
	go srv.Serve(ln)
	stop = func() { srv.Stop(); os.Remove(sock) }
	t.Cleanup(stop)
	return stop
}

// lockedBuffer lets the probe's logger and the test share one buffer.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newProbedProxy is a proxy (not serving) whose runtime connection goes to sock.
func newProbedProxy(t testing.TB, sock string, logs *lockedBuffer) *Proxy {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, nil))
	}
	p, err := New(Options{RuntimeEndpoint: "unix://" + sock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.runtime.Close() })
	return p
}

// A runtime that only answers slowly is not called unreachable, and its recovery
// does not start a reconcile pass; one that was gone does.
func TestProbeTellsSlowFromUnreachable(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "rt.sock")
	rt := &holdingRuntime{}
	stop := serveRuntime(t, sock, rt)
	logs := &lockedBuffer{}
	p := newProbedProxy(t, sock, logs)
	var healths []Health // the probe is driven from this goroutine only
	var reconciles int
	// A timeout no loaded machine reaches when the runtime answers; slowness is
	// made by holding the runtime, with a short timeout for that step only.
	const answerTimeout = 20 * time.Second
	probe := p.Probe(ProbeOptions{
		Timeout:     answerTimeout,
		OnHealth:    func(h Health) { healths = append(healths, h) },
		OnRecovered: func() { reconciles++ },
	})
	ctx := context.Background()
	readyErr := func() string {
		if err := probe.Ready(); err != nil {
			return err.Error()
		}
		return ""
	}
	if got := readyErr(); got != "runtime not probed yet" {
		t.Errorf("/readyz detail before the first probe = %q", got)
	}

	probe.probe(ctx)
	if got := readyErr(); got != "" {
		t.Fatalf("a runtime that answers: not ready: %s", got)
	}

	// Connected, but no answer before the probe gives up.
	rt.held.Store(true)
	probe.timeout = 50 * time.Millisecond
	probe.probe(ctx)
	probe.timeout = answerTimeout
	rt.held.Store(false)
	if got := readyErr(); !strings.HasPrefix(got, "runtime slow: ") {
		t.Errorf("/readyz detail for a slow runtime = %q, want it to say slow", got)
	}
	if strings.Contains(logs.String(), "unreachable") || !strings.Contains(logs.String(), "runtime slow") {
		t.Errorf("a slow runtime was logged as:\n%s", logs)
	}
	probe.probe(ctx)
	if got := readyErr(); got != "" {
		t.Errorf("a runtime that answers again: not ready: %s", got)
	}
	if reconciles != 0 {
		t.Errorf("a runtime that was only slow started %d reconcile passes, want none", reconciles)
	}
	if !strings.Contains(logs.String(), "runtime answers in time again") {
		t.Errorf("the end of the slow spell is not logged:\n%s", logs)
	}

	// Gone, then back: that reconciles, once.
	stop()
	probe.probe(ctx)
	if got := readyErr(); !strings.HasPrefix(got, "runtime unreachable: ") {
		t.Errorf("/readyz detail for a runtime that is gone = %q", got)
	}
	serveRuntime(t, sock, rt)
	for deadline := time.Now().Add(10 * time.Second); probe.Health() != RuntimeUp; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the probe did not see the runtime back within 10s: %s", readyErr())
		}
		probe.probe(ctx)
	}
	if reconciles != 1 {
		t.Errorf("a runtime back from unreachable started %d reconcile passes, want 1", reconciles)
	}
	if !strings.Contains(logs.String(), "runtime unreachable;") || !strings.Contains(logs.String(), "runtime is back; reconciling") {
		t.Errorf("log:\n%s", logs)
	}

	// Every probe is reported (criguard_runtime_up follows it): up, slow, up,
	// unreachable until the runtime is back, up.
	want := []Health{RuntimeUp, RuntimeSlow, RuntimeUp, RuntimeUnreachable}
	ok := len(healths) >= len(want)+1 && healths[len(healths)-1] == RuntimeUp
	for i := 0; ok && i < len(healths)-1; i++ {
		if i < len(want) {
			ok = healths[i] == want[i]
		} else {
			ok = healths[i] == RuntimeUnreachable
		}
	}
	if !ok {
		t.Errorf("health reported after each probe: %v, want %v, then unreachable until up", healths, want)
	}
}

// Run probes at once, not an interval later, then every interval, and stops with its context.
func TestProbeRunProbesAtOnceThenEveryInterval(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "rt.sock")
	serveRuntime(t, sock, &holdingRuntime{})
	p := newProbedProxy(t, sock, nil)
	for _, tc := range []struct {
		interval        time.Duration
		atLeast, atMost int32 // atMost 0: no bound
	}{
		{time.Hour, 1, 1},             // only the first probe can come
		{10 * time.Millisecond, 3, 0}, // and the ticker brings the next ones
	} {
		var probes atomic.Int32
		probe := p.Probe(ProbeOptions{Interval: tc.interval, OnHealth: func(h Health) {
			if h == RuntimeUp {
				probes.Add(1)
			}
		}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { probe.Run(ctx); close(done) }()
		for deadline := time.Now().Add(10 * time.Second); probes.Load() < tc.atLeast; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("interval %s: %d probes answered within 10s, want %d", tc.interval, probes.Load(), tc.atLeast)
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("interval %s: Run did not return after its context ended", tc.interval)
		}
		if n := probes.Load(); tc.atMost > 0 && n > tc.atMost {
			t.Errorf("interval %s: %d probes, want at most %d", tc.interval, n, tc.atMost)
		}
		if probe.Health() != RuntimeUp {
			t.Errorf("interval %s: health %s after answered probes, want up", tc.interval, probe.Health())
		}
	}
}

// countingRuntime counts the Version calls it answers.
type countingRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	versions atomic.Int32
}

func (r *countingRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	r.versions.Add(1)
	return &runtimeapi.VersionResponse{RuntimeName: "counting"}, nil
}

// A forwarded call the runtime answered lately stands for the probe's Version call
// while the runtime is up; an old answer, or a runtime not known up, is asked.
func TestProbeTakesARecentForwardedAnswer(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "rt.sock")
	rt := &countingRuntime{}
	stop := serveRuntime(t, sock, rt)
	p := newProbedProxy(t, sock, nil)
	const interval = time.Minute
	var answered time.Time // the probe is driven from this goroutine only
	var healths []Health
	probe := p.Probe(ProbeOptions{
		Interval: interval,
		Timeout:  20 * time.Second,
		OnHealth: func(h Health) { healths = append(healths, h) },
		Answered: func() time.Time { return answered },
	})
	ctx := context.Background()

	answered = time.Now() // unprobed: the probe asks anyway
	probe.probe(ctx)
	if n := rt.versions.Load(); n != 1 || probe.Health() != RuntimeUp {
		t.Fatalf("first probe: %d Version calls, health %s; want 1, up", n, probe.Health())
	}
	answered = time.Now()
	probe.probe(ctx)
	if n := rt.versions.Load(); n != 1 || probe.Health() != RuntimeUp || healths[len(healths)-1] != RuntimeUp {
		t.Errorf("up, answered just now: %d Version calls (want 1: none more), health %s, reported %v", n, probe.Health(), healths)
	}
	answered = time.Now().Add(-interval / 2)
	probe.probe(ctx)
	if n := rt.versions.Load(); n != 2 {
		t.Errorf("up, answered half an interval ago: %d Version calls, want 2 (the probe asks)", n)
	}

	// Gone: the probe finds it unreachable; then a recent answer (say from a call
	// that raced the outage) does not stand for a recovery: the probe asks.
	stop()
	answered = time.Now().Add(-interval)
	probe.probe(ctx)
	if probe.Health() != RuntimeUnreachable {
		t.Fatalf("runtime stopped: health %s, want unreachable", probe.Health())
	}
	answered = time.Now()
	probe.probe(ctx)
	if probe.Health() != RuntimeUnreachable {
		t.Errorf("unreachable, answered just now, runtime still gone: health %s, want unreachable (asked, not assumed)", probe.Health())
	}
}

// probeRuntimeEnv makes the test binary a runtime of its own serving the socket
// it names, until its stdin closes: the probe's CPU is then measured apart from
// the runtime's, as on a node.
const probeRuntimeEnv = "CRIGUARD_TEST_PROBE_RUNTIME_SOCKET"

func runProbeRuntime(sock string) int {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, &holdingRuntime{})
	go srv.Serve(ln)
	io.Copy(io.Discard, os.Stdin)
	srv.Stop()
	return 0
}

// One probe of a runtime that answers, as criguard makes every 5 s at idle: the
// Version round trip over the proxy's connection plus the bookkeeping, against
// a runtime in another process. cpu-ns/op is this process's CPU (user+system,
// GC included) per probe. "back-to-back" runs warm; "spaced" sleeps 20 ms
// before each probe, as idle probes come cold; "sleep-only" is the same sleep
// without the probe, the floor to subtract.
//
//	go test -run '^$' -bench RuntimeProbe -benchmem ./proxy/
func BenchmarkRuntimeProbe(b *testing.B) {
	sock := filepath.Join(shortTempDir(b), "rt.sock")
	runtime := exec.Command(os.Args[0], "-test.run=^$")
	runtime.Env = append(os.Environ(), probeRuntimeEnv+"="+sock)
	runtime.Stderr = os.Stderr
	stdin, err := runtime.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := runtime.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); runtime.Wait() })
	p := newProbedProxy(b, sock, nil)
	var up atomic.Bool
	probe := p.Probe(ProbeOptions{OnHealth: func(h Health) { up.Store(h == RuntimeUp) }})
	ctx := context.Background()
	// Connect outside the measurement, once the runtime listens.
	for deadline := time.Now().Add(10 * time.Second); !up.Load(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("the runtime did not answer within 10s: %v", probe.Ready())
		}
		probe.probe(ctx)
	}
	for _, bc := range []struct {
		name  string
		pause time.Duration
		probe bool
	}{
		{"back-to-back", 0, true},
		{"spaced", 20 * time.Millisecond, true},
		{"sleep-only", 20 * time.Millisecond, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpuBefore := cpuTime(b)
			for b.Loop() {
				if bc.pause > 0 {
					time.Sleep(bc.pause)
				}
				if bc.probe {
					probe.probe(ctx)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpuBefore)/float64(b.N), "cpu-ns/op")
			if !up.Load() {
				b.Fatalf("the runtime stopped answering: %v", probe.Ready())
			}
		})
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A probe that times out before the channel ever connected (a socket that
// accepts but never speaks gRPC) is unreachable: slow needs a connected channel.
func TestProbeTimeoutWithoutAChannelIsUnreachable(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "mute.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn // open, never answered
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	p := newProbedProxy(t, sock, nil)
	probe := p.Probe(ProbeOptions{Timeout: 50 * time.Millisecond})
	probe.probe(context.Background())
	err = probe.Ready()
	if err == nil || !strings.HasPrefix(err.Error(), "runtime unreachable: ") {
		t.Errorf("/readyz detail for a runtime that never connected = %v, want unreachable", err)
	}
	if err != nil && !strings.Contains(err.Error(), "DeadlineExceeded") {
		t.Errorf("the probe failed before its timeout (%v); this test is about a timeout", err)
	}
}
