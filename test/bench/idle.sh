#!/usr/bin/env bash
# Idle cost on a node (issue 20): a real standalone kubelet with static pods, criguard
# and the thin forwarder taking turns on its socket (TestIdleKubelet, build tag bench).
# Root; run under the lab lock: flock /tmp/criguard-lab.lock test/bench/idle.sh
# IDLE_PODS (default "30,110"), IDLE_ROUNDS (2), IDLE_WARMUP (60s, once per size, before
# the first window), IDLE_SETTLE (20s, before each window), IDLE_STEADY (60s);
# CRIGUARD_OLD_BIN adds an older criguard build as a third variant; IDLE_CHAIN=1 runs the
# variants at once, one behind the other, measured over the same windows (IDLE_ROUNDS a
# multiple of the variants, so that each holds the front place as often); IDLE_PERF=1 records
# each window with perf (idle-perf-PODS-ROUND-VARIANT-{flat,inclusive}.txt beside test.log).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
	echo "idle: must run as root (it starts containerd and kubelet)" >&2
	exit 1
fi
cd "$repo"
export CRIGUARD_BIN=${CRIGUARD_BIN:-$repo/bin/criguard}
[[ -x "$CRIGUARD_BIN" ]] || { echo "idle: $CRIGUARD_BIN missing: run make build" >&2; exit 1; }
export KUBELET_BIN=${KUBELET_BIN:-$(test/v2node/kubelet.sh)}
out=${BENCH_OUT:-$repo/_out/bench-idle}
mkdir -p "$out/bin"
CGO_ENABLED=0 go build -trimpath -o "$out/bin/thinproxy" ./test/bench/thinproxy
export THINPROXY_BIN=$out/bin/thinproxy BENCH_OUT=$out
{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (dirty tree)')"
	echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r); load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"
go test -tags bench -count=1 -run '^TestIdleKubelet$' -v -timeout 60m ./test/bench/ 2>&1 | tee "$out/test.log"
