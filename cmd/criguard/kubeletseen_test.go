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

// writeHint replaces the file whole and leaves no temporary file behind; a state
// dir it cannot make is an error, not a silent loss.
func TestWriteHintReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", kubeletSeenFile)
	for _, data := range []string{"2026-12-05T09:00:00Z\n", "2026-12-05T09:00:10Z\n"} {
		if err := writeHint(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != data {
			t.Fatalf("after writing %q: read %q, %v", data, got, err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Errorf("state dir holds %v (%v), want only %s", entries, err, kubeletSeenFile)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeHint(filepath.Join(blocker, kubeletSeenFile), []byte("x")); err == nil {
		t.Error("writing under a regular file succeeded")
	}
}
