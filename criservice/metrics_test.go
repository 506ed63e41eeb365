package criservice

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

func TestObserveCallCountsByMethodAndCode(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
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
	var nilMetrics *Metrics
	nilMetrics.ObserveCall("/x/Y", codes.OK, 0) // a nil Metrics is a no-op, not a panic
}
