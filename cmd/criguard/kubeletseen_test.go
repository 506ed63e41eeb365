package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/criguard/criguard/proxy"
)

func TestKubeletSeen(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if note := kubeletNote(dir, now); !strings.Contains(note, "never been seen") {
		t.Errorf("no record: %q", note)
	}
	metrics := proxy.NewCallMetrics(prometheus.NewRegistry())
	// crictl's relist looks like kubelet's; the proxy tells them apart by the peer.
	metrics.ObserveCall("/runtime.v1.RuntimeService/ListPodSandbox", codes.OK, time.Millisecond)
	metrics.ObserveCall("/runtime.v1.RuntimeService/ListContainers", codes.OK, time.Millisecond)
	if !metrics.LastKubeletCall().IsZero() {
		t.Errorf("a ListContainers not from kubelet was counted as kubelet's")
	}
	var _ proxy.KubeletObserver = metrics
	metrics.KubeletCalled()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		recordKubeletCalls(ctx, dir, metrics, 10*time.Millisecond, slog.New(slog.DiscardHandler))
		close(done)
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, kubeletSeenFile)); err == nil {
			break
		}
	}
	cancel()
	<-done
	if note := kubeletNote(dir, time.Now()); !strings.Contains(note, "kubelet calls through criguard") {
		t.Errorf("fresh record: %q", note)
	}
	if note := kubeletNote(dir, time.Now().Add(5*time.Minute)); !strings.Contains(note, "directly") {
		t.Errorf("stale record: %q", note)
	}
}

// The record is written at kubelet's first call, then only every kubeletSeenEvery:
// a live kubelet's record, rewritten that often and looked at every
// kubeletSeenLook, is never old enough for status to call kubelet gone.
func TestKubeletRecordIsRewrittenTwiceAMinute(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		last, written time.Time
		want          bool
	}{
		{"kubelet never called", time.Time{}, time.Time{}, false},
		{"its first call", t0, time.Time{}, true},
		{"no call since the record", t0, t0, false},
		{"calls for 10 s since", t0.Add(10 * time.Second), t0, false},
		{"calls for 30 s since", t0.Add(kubeletSeenEvery), t0, true},
	}
	for _, tt := range tests {
		if got := recordDue(tt.last, tt.written); got != tt.want {
			t.Errorf("%s: recordDue = %v, want %v", tt.name, got, tt.want)
		}
	}
	if oldest := kubeletSeenEvery + kubeletSeenLook + time.Second; oldest >= kubeletStale {
		t.Errorf("a live kubelet's record can be %s old, which status reads as stale (%s)", oldest, kubeletStale)
	}
}
