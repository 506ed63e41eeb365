package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// slowRuntime answers Version after delay, or not at all if the caller gives up first.
type slowRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	delay atomic.Int64 // time.Duration
}

func (r *slowRuntime) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	select {
	case <-time.After(time.Duration(r.delay.Load())):
		return &runtimeapi.VersionResponse{RuntimeName: "slow"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serveAt serves rt on sock until the returned stop is called; stop removes the socket.
func serveAt(t *testing.T, sock string, rt runtimeapi.RuntimeServiceServer) (stop func()) {
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

// A runtime that only answers slowly is not called unreachable, and its recovery
// does not start a reconcile pass; one that was gone does.
func TestProbeTellsSlowFromUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "rt.sock")
	rt := &slowRuntime{}
	stop := serveAt(t, sock, rt)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	logs := &syncWriter{w: &bytes.Buffer{}}
	var reconciles atomic.Int32
	probe := &runtimeProbe{rt: runtimeapi.NewRuntimeServiceClient(conn), state: conn.GetState,
		log: slog.New(slog.NewTextHandler(logs, nil)), onRecovered: func() { reconciles.Add(1) }, timeout: 100 * time.Millisecond}
	ctx := context.Background()
	readyErr := func() string {
		if err := ready(probe, &policyHealth{}); err != nil {
			return err.Error()
		}
		return ""
	}

	probe.probe(ctx)
	if got := readyErr(); got != "" {
		t.Fatalf("a runtime that answers: not ready: %s", got)
	}

	rt.delay.Store(int64(time.Second))
	probe.probe(ctx)
	if got := readyErr(); !strings.HasPrefix(got, "runtime slow: ") {
		t.Errorf("/readyz detail for a slow runtime = %q, want it to say slow", got)
	}
	if strings.Contains(logs.String(), "unreachable") || !strings.Contains(logs.String(), "runtime slow") {
		t.Errorf("a slow runtime was logged as:\n%s", logs)
	}
	rt.delay.Store(0)
	probe.probe(ctx)
	if got := readyErr(); got != "" {
		t.Errorf("a runtime that answers again: not ready: %s", got)
	}
	if n := reconciles.Load(); n != 0 {
		t.Errorf("a runtime that was only slow started %d reconcile passes, want none", n)
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
	serveAt(t, sock, rt)
	eventually(t, "the probe to see the runtime back", func() bool {
		probe.probe(ctx)
		return probe.answering()
	})
	if n := reconciles.Load(); n != 1 {
		t.Errorf("a runtime back from unreachable started %d reconcile passes, want 1", n)
	}
	if !strings.Contains(logs.String(), "runtime unreachable;") || !strings.Contains(logs.String(), "runtime is back; reconciling") {
		t.Errorf("log:\n%s", logs)
	}
}
