#!/usr/bin/env bash
# make demo: a throttled and an unthrottled pod through criguard, side by side,
# on a real containerd. Run as root; `make demo` builds criguard and the lab first.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "make demo needs root (it runs containerd and writes cgroups)" >&2; exit 1; }
export CRIGUARD_BIN="${CRIGUARD_BIN:-$PWD/bin/criguard}"
# -v prints the demo's report; the test framework's own lines are filtered out.
go test -tags e2e,demo -count=1 -run '^TestDemo$' -v -timeout 10m ./test/e2e/ \
  | grep -vE '^(=== RUN|--- PASS|PASS$|ok  )'
