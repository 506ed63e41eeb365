package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/criguard/criguard/internal/atomicfile"
	"github.com/criguard/criguard/proxy"
)

// kubeletSeenFile holds when kubelet last called through criguard, for `status`,
// which runs in its own process.
const kubeletSeenFile = "kubelet-last-call"

// kubeletStale is how long without a call from kubelet (known by its connection's
// peer process) means kubelet is not using criguard: it relists every second.
const kubeletStale = time.Minute

// kubeletSeenEvery is how often the record is rewritten while kubelet calls (the
// first call is written at the first look): a record at most this old never reads
// as stale to status, and an idle node writes a file twice a minute, not six times.
const kubeletSeenEvery = kubeletStale / 2

// kubeletSeenLook is how often serve looks at kubelet's last call: the first one is
// on record within it.
const kubeletSeenLook = 10 * time.Second

// recordKubeletCalls looks every interval at when kubelet last called through
// criguard and writes it to the state dir: at once the first time, then once it is
// kubeletSeenEvery newer than the record, until ctx ends.
func recordKubeletCalls(ctx context.Context, stateDir string, metrics *proxy.CallMetrics, interval time.Duration, log *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var written time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		last := metrics.LastKubeletCall()
		if !recordDue(last, written) {
			continue
		}
		// A hint, without fsyncs: status then says the record is missing or old,
		// and the next write mends it.
		if err := atomicfile.WriteHint(filepath.Join(stateDir, kubeletSeenFile), []byte(last.UTC().Format(time.RFC3339)+"\n")); err != nil {
			log.Debug("cannot record kubelet's last call", "err", err)
			continue
		}
		written = last
	}
}

// recordDue reports whether kubelet's last call is to be written over the record
// last written (zero: none yet).
func recordDue(last, written time.Time) bool {
	return !last.IsZero() && (written.IsZero() || last.Sub(written) >= kubeletSeenEvery)
}

// kubeletNote says whether kubelet calls through criguard, from the daemon's record.
func kubeletNote(stateDir string, now time.Time) string {
	if mode, ok := runningMode(stateDir); ok && strings.HasPrefix(mode, "NRI plugin") {
		return fmt.Sprintf("criguard runs as the runtime's NRI plugin (%s): kubelet talks to the runtime directly", mode)
	}
	b, err := os.ReadFile(filepath.Join(stateDir, kubeletSeenFile))
	if err != nil {
		return fmt.Sprintf("kubelet has never been seen calling through criguard (no %s in %s): check its containerRuntimeEndpoint", kubeletSeenFile, stateDir)
	}
	last, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Sprintf("%s: %v", filepath.Join(stateDir, kubeletSeenFile), err)
	}
	ago := now.Sub(last).Truncate(time.Second)
	if ago > kubeletStale {
		return fmt.Sprintf("kubelet last called through criguard %s ago: it may be talking to the runtime directly (check its containerRuntimeEndpoint)", ago)
	}
	return fmt.Sprintf("kubelet calls through criguard (last %s ago)", ago)
}
