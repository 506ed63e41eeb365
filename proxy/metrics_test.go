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
