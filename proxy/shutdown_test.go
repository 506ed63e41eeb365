package proxy

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// holdVersion makes Version wait for release (or its context) before it is
// forwarded, and says when a call has arrived.
func holdVersion(arrived chan<- struct{}, release <-chan struct{}) func(*Proxy) {
	return func(p *Proxy) {
		p.Handle("/runtime.v1.RuntimeService/Version", Hook{Before: func(ctx context.Context, _ []byte) ([]byte, any, error) {
			arrived <- struct{}{}
			select {
			case <-release:
				return nil, nil, nil
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}})
	}
}

// subscribe opens an event stream through the proxy and returns how it ends.
func subscribe(t *testing.T, e *env) <-chan error {
	t.Helper()
	stream, err := e.rt.GetContainerEvents(ctxTimeout(t, 10*time.Second), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		ended <- err
	}()
	return ended
}

// A stream told to end while a unary call still drains would send its client
// to re-subscribe against a criguard that cannot serve it yet: streams end once
// the unary calls are done, and then with Unavailable.
func TestShutdownEndsStreamsAfterUnaryCalls(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	e := newEnv(t, holdVersion(arrived, release))
	ended := subscribe(t, e)
	called := make(chan error, 1)
	go func() {
		_, err := e.rt.Version(ctxTimeout(t, 10*time.Second), &runtimeapi.VersionRequest{})
		called <- err
	}()
	<-arrived
	stopped := make(chan struct{})
	go func() { e.proxy.Shutdown(5 * time.Second); close(stopped) }()

	select {
	case err := <-ended:
		t.Fatalf("the event stream ended (%v) while a unary call was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-called; err != nil {
		t.Fatalf("the in-flight unary call: %v, want it to finish", err)
	}
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("event stream at shutdown: %v, want Unavailable so kubelet re-subscribes", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the event stream outlived the last unary call")
	}
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("shutdown did not return once calls and streams were done")
	}
}

// A unary call that outlives the grace is cut, and the streams end with it.
func TestShutdownCutsCallsAtTheGrace(t *testing.T) {
	arrived := make(chan struct{}, 1)
	e := newEnv(t, holdVersion(arrived, nil))
	ended := subscribe(t, e)
	called := make(chan error, 1)
	go func() {
		_, err := e.rt.Version(ctxTimeout(t, 10*time.Second), &runtimeapi.VersionRequest{})
		called <- err
	}()
	<-arrived
	start := time.Now()
	e.proxy.Shutdown(300 * time.Millisecond)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown took %s with a 300ms grace", took)
	}
	if err := <-called; err == nil {
		t.Error("the hung unary call succeeded; want it cut")
	}
	if err := <-ended; status.Code(err) != codes.Unavailable {
		t.Errorf("event stream after the grace: %v, want Unavailable", err)
	}
}
