#!/usr/bin/env bash
# make bench: criguard's performance figures on private containerds (issues 2, 5, 6, 25).
# Builds the thin reference forwarder, runs TestBench (build tag bench), and writes
# _out/bench/results.md: the machine, the command, then the figures. Sizes can be
# shrunk for a smoke run: BENCH_CONTAINERS, BENCH_CALLS, BENCH_BATCH, BENCH_STARTS,
# BENCH_SOAK_CYCLES, BENCH_SOAK_MAX, BENCH_SOAK_WORKERS (see bench_test.go). BENCH_THIN_MD_FLAGS
# replaces the thin+md variant's flags ("-metadata"; "-metadata -tuned": criguard's transport).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
	echo "bench: must run as root (it starts containerd and writes cgroups)" >&2
	exit 1
fi
export CRIGUARD_BIN=${CRIGUARD_BIN:-$repo/bin/criguard}
if [[ ! -x "$CRIGUARD_BIN" ]]; then
	echo "bench: $CRIGUARD_BIN missing: run make build (make bench does)" >&2
	exit 1
fi
out=${BENCH_OUT:-$repo/_out/bench}
export BENCH_OUT=$out/run
# Only what this script writes: BENCH_OUT may point at a directory that holds more.
rm -rf "$out/run" "$out/bin" "$out/results.md" "$out/test.log"
mkdir -p "$out/bin" "$BENCH_OUT"

# perf samples both proxies to show where criguard's CPU per call goes. Best effort:
# without it the figures are the same and the profile section says it was skipped.
if ! command -v perf >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf ||
		echo "bench: could not install linux-perf; the profile is skipped" >&2
fi

cd "$repo"
CGO_ENABLED=0 go build -trimpath -o "$out/bin/thinproxy" ./test/bench/thinproxy
export THINPROXY_BIN=$out/bin/thinproxy

# TestBench: containerd 1.6 (calls, starts, soak); TestFrontends: containerd 2.4, direct,
# proxy and NRI plugin side by side. BENCH_RUN picks one (a go test -run pattern).
cmd=(go test -tags bench -count=1 -run "${BENCH_RUN:-^(TestBench|TestFrontends)\$}" -v -timeout 50m ./test/bench/)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load=$(cut -d' ' -f1-3 /proc/loadavg)
memory=$(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')
status=0
"${cmd[@]}" 2>&1 | tee "$out/test.log" || status=$?

{
	echo "# criguard benchmark results"
	echo
	echo "- date: $started"
	echo "- command: \`make bench\` (runs \`make build lab\`, then \`test/bench/run.sh\`, which runs \`${cmd[*]}\`)"
	echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (dirty tree)')"
	echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r)"
	echo "- memory (\`free -h\`): $memory"
	echo "- load average at the start: $load (the machine is shared)"
	echo "- runtime: $(containerd --version 2>/dev/null | cut -d' ' -f2-3), $(runc --version 2>/dev/null | head -1); $(go version | cut -d' ' -f3)"
	echo "- go test exit status: $status"
	echo
	if [[ -s "$BENCH_OUT/results.md" ]]; then
		cat "$BENCH_OUT/results.md"
	else
		echo "(no results: TestBench failed before writing them, or did not run; see test.log)"
	fi
	echo
	echo "## 4. The two front ends: direct, proxy and NRI plugin (issue 25)"
	echo
	if [[ -s "$BENCH_OUT/frontends.md" ]]; then
		cat "$BENCH_OUT/frontends.md"
	else
		echo "(not measured: TestFrontends failed or did not run; see test.log)"
	fi
} >"$out/results.md"
echo "bench: results in $out/results.md, test log in $out/test.log"
exit "$status"
