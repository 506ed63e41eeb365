package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/criguard/criguard/internal/fakeruntime"
)

// fakeSystemd is the NOTIFY_SOCKET end of sd_notify: every datagram criguard
// sends arrives on messages.
type fakeSystemd struct {
	messages chan string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	addr := filepath.Join(shortSocketDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	s := &fakeSystemd{messages: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.messages)
				return
			}
			s.messages <- string(buf[:n])
		}
	}()
	return s
}

// next returns the next message that contains want, failing after timeout.
func (s *fakeSystemd) next(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.messages:
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from criguard within %s", want, timeout)
		}
	}
}

// none fails if a message containing unwanted arrives within d.
func (s *fakeSystemd) none(t *testing.T, unwanted string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-s.messages:
			if strings.Contains(m, unwanted) {
				t.Fatalf("got %q too early", m)
			}
		case <-deadline:
			return
		}
	}
}

func TestReadyWhenWaitsForReadiness(t *testing.T) {
	systemd := newFakeSystemd(t)
	var ready atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		systemdNotifier{log: slog.New(slog.DiscardHandler)}.readyWhen(context.Background(), func() (bool, string) {
			if ready.Load() {
				return true, "forwarding"
			}
			return false, "waiting for the runtime"
		})
	}()
	systemd.next(t, "STATUS=waiting for the runtime", time.Second)
	systemd.none(t, "READY=1", 5*readyPoll)
	ready.Store(true)
	if got := systemd.next(t, "READY=1", time.Second); got != "READY=1\nSTATUS=forwarding" {
		t.Errorf("READY message %q, want READY=1 with the status", got)
	}
	<-done
}

func TestWatchdogPingsAtHalfTheInterval(t *testing.T) {
	systemd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		systemdNotifier{log: slog.New(slog.DiscardHandler)}.watchdog(ctx)
	}()
	start := time.Now()
	for range 3 {
		systemd.next(t, "WATCHDOG=1", time.Second)
	}
	// Pings at 0, 100 and 200 ms: well inside the 200 ms watchdog.
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("3 pings took %s with WATCHDOG_USEC=200000, want about 200ms", took)
	}
	cancel()
	<-done
}

// serveNotifying runs serve against runtimeEndpoint with NOTIFY_SOCKET set, and
// returns its CRI socket and a stop function that waits for serve to return.
func serveNotifying(t *testing.T, runtimeEndpoint string) (socket string, stop func()) {
	t.Helper()
	node := newFakeNode(t)
	socket = filepath.Join(shortSocketDir(t), "criguard.sock")
	logs := &syncWriter{w: &strings.Builder{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveConfig{
			listen: "unix://" + socket, runtimeEndpoint: runtimeEndpoint, socketMode: 0o660,
			shutdownGrace: time.Second, policyPath: filepath.Join(t.TempDir(), "policy.hcl"), resolver: "cri",
			reconcileInterval: time.Hour, applyTimeout: time.Second,
			procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys"),
		}, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	return socket, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	}
}

// criguard forwards from its first moment, but READY=1 waits until the runtime
// has answered: a unit ordered after criguard.service must not start against a
// criguard that can only answer Unavailable.
func TestServeSendsReadyOnlyOnceTheRuntimeAnswers(t *testing.T) {
	systemd := newFakeSystemd(t)
	socket, stop := serveNotifying(t, "unix://"+filepath.Join(shortSocketDir(t), "no-runtime.sock"))
	eventually(t, "the CRI socket", func() bool {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	systemd.next(t, "STATUS=waiting for the runtime", 2*time.Second)
	systemd.none(t, "READY=1", time.Second)
	stop()
	systemd.next(t, "STOPPING=1", time.Second)
}

func TestServeSendsReadyAndStopping(t *testing.T) {
	systemd := newFakeSystemd(t)
	_, runtimeSock := fakeruntime.Serve(t, fakeruntime.New())
	_, stop := serveNotifying(t, "unix://"+runtimeSock)
	// No policy file: nothing to wait for but the runtime.
	if got := systemd.next(t, "READY=1", 5*time.Second); !strings.Contains(got, "STATUS=forwarding") {
		t.Errorf("READY message %q lacks the status", got)
	}
	stop()
	systemd.next(t, "STOPPING=1", time.Second)
}
