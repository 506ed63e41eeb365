package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

func TestObserveCallCountsByMethodAndCode(t *testing.T) {
	m := NewCallMetrics(prometheus.NewRegistry())
	for range 3 {
		m.ObserveCall("/runtime.v1.RuntimeService/Version", codes.OK, time.Millisecond)
	}
	m.ObserveCall("/runtime.v1.RuntimeService/Version", codes.Unavailable, time.Millisecond)
	m.ObserveCall("/runtime.v1.ImageService/PullImage", codes.NotFound, time.Second)
	for series, want := range map[[2]string]float64{
		{"Version", "OK"}: 3, {"Version", "Unavailable"}: 1, {"PullImage", "NotFound"}: 1, {"PullImage", "OK"}: 0,
	} {
		if got := testutil.ToFloat64(m.calls.WithLabelValues(series[0], series[1])); got != want {
			t.Errorf("calls%v = %v, want %v", series, got, want)
		}
	}
	if got := testutil.CollectAndCount(m.latency); got != 2 {
		t.Errorf("latency series = %d, want one per method", got)
	}
	var nilMetrics *CallMetrics
	nilMetrics.ObserveCall("/x/Y", codes.OK, 0) // a nil Metrics is a no-op, not a panic
}

// Method names come from clients: any name this build does not know is counted
// as "other", so a client sending thousands of names cannot grow the series.
func TestObserveCallBoundsMethodLabels(t *testing.T) {
	m := NewCallMetrics(prometheus.NewRegistry())
	for i := range 5000 {
		m.ObserveCall(fmt.Sprintf("/runtime.v1.RuntimeService/Made%d", i), codes.Unimplemented, time.Millisecond)
		m.ObserveCall(fmt.Sprintf("/evil/%d", i), codes.Code(100+i), time.Millisecond)
	}
	m.ObserveCall("/runtime.v1.RuntimeService/Version", codes.OK, time.Millisecond)
	// other×OK and Version×OK are bound on first use; other×Unimplemented, other×Unknown.
	if got := testutil.CollectAndCount(m.calls); got != 4 {
		t.Errorf("call series = %d, want 4", got)
	}
	if got := testutil.CollectAndCount(m.latency); got != 2 {
		t.Errorf("latency series = %d, want 2 (other, Version)", got)
	}
	if got := testutil.ToFloat64(m.calls.WithLabelValues("other", "Unimplemented")); got != 5000 {
		t.Errorf("other×Unimplemented = %v, want 5000", got)
	}
}

// Only a RuntimeService call the runtime answered with OK within the probe's timeout
// shows the runtime up; image calls, errors, slow answers and unknown names do not.
func TestRuntimeAnsweredOnlyByTimelyRuntimeOK(t *testing.T) {
	m := NewCallMetrics(prometheus.NewRegistry())
	for _, c := range []struct {
		method  string
		code    codes.Code
		elapsed time.Duration
	}{
		{"/runtime.v1.ImageService/ListImages", codes.OK, time.Millisecond},
		{"/runtime.v1.RuntimeService/ListContainers", codes.Unavailable, time.Millisecond},
		{"/runtime.v1.RuntimeService/ListContainers", codes.OK, DefaultProbeTimeout + time.Millisecond},
		{"/runtime.v1.RuntimeService/Made", codes.OK, time.Millisecond},
	} {
		m.ObserveCall(c.method, c.code, c.elapsed)
		if got := m.RuntimeAnswered(); !got.IsZero() {
			t.Fatalf("after %s %s in %s: RuntimeAnswered = %v, want zero", c.method, c.code, c.elapsed, got)
		}
	}
	before := time.Now()
	m.ObserveCall("/runtime.v1.RuntimeService/ListContainers", codes.OK, time.Millisecond)
	if got := m.RuntimeAnswered(); got.Before(before) || got.After(time.Now()) {
		t.Errorf("after an OK ListContainers: RuntimeAnswered = %v, want between %v and now", got, before)
	}
	var nilMetrics *CallMetrics
	if !nilMetrics.RuntimeAnswered().IsZero() {
		t.Error("a nil CallMetrics has an answer")
	}
}
