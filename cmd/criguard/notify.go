package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// readyPoll is how often readiness is checked before READY=1 is sent.
const readyPoll = 100 * time.Millisecond

// systemdNotifier speaks sd_notify for a Type=notify unit. Without
// NOTIFY_SOCKET (no systemd, or another Type) every message is dropped.
type systemdNotifier struct {
	log *slog.Logger
}

func (n systemdNotifier) send(state string) {
	// false: keep NOTIFY_SOCKET, later messages need it too.
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notification failed", "state", state, "err", err)
	}
}

// readyWhen sends READY=1, with status as STATUS=, once ready reports true,
// and returns. Until then systemd keeps the unit "activating", so units
// ordered after criguard.service wait for a criguard that can forward.
func (n systemdNotifier) readyWhen(ctx context.Context, ready func() (ok bool, status string)) {
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	waiting := false
	for {
		if ok, status := ready(); ok {
			n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
			return
		} else if !waiting {
			n.send("STATUS=" + status)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// watchdog pings WATCHDOG=1 at half of WATCHDOG_USEC (WatchdogSec=) until ctx
// ends; without a watchdog it returns at once.
func (n systemdNotifier) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog setting ignored", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval / 2)
	defer ticker.Stop()
	for {
		n.send(daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// stopping tells systemd the stop has begun (the unit shows "deactivating"
// while in-flight calls finish).
func (n systemdNotifier) stopping() { n.send(daemon.SdNotifyStopping) }

// readyForSystemd is the readiness READY=1 waits for: the runtime has answered,
// as /readyz requires. A policy that is broken at start does not hold READY
// back: criguard then forwards on purpose (under the last good policy, or hands
// off; see serve), and a unit left "activating" would be killed at
// TimeoutStartSec, cutting kubelet off. STATUS= says so; /readyz stays 503.
func readyForSystemd(runtime runtimeReadiness, policy *policyHealth) (bool, string) {
	if runtime.Ready() != nil {
		return false, "waiting for the runtime to answer"
	}
	if err := ready(runtime, policy); err != nil {
		return true, "forwarding; " + err.Error()
	}
	return true, "forwarding; the runtime answers"
}
