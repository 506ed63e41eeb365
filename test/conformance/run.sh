#!/usr/bin/env bash
# make conformance: critest against private containerds (Debian's 1.6 and the lab's 2.4)
# and CRI-O 1.34, directly and through criguard. Fails if any spec that passes directly
# fails through criguard; writes the pass counts to docs/CONFORMANCE.md and keeps
# critest's JUnit reports and logs in _out/conformance. CONFORMANCE_RUNTIME=containerd1,
# containerd2 or crio runs one runtime, CONFORMANCE_FOCUS (a ginkgo regexp) part of the
# suite, CONFORMANCE_CRIGUARD_ARGS adds serve flags; each leaves docs/CONFORMANCE.md alone.
# About 25 minutes: two critest runs of 3-5 minutes per runtime. Every run that ran
# critest directly records the direct failures per runtime version in
# test/conformance/baseline.json; CONFORMANCE_BASELINE=1 (CI) runs critest directly only
# when a spec fails through criguard that the baseline does not list.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
	echo "conformance: must run as root (it starts containerd and CRI-O)" >&2
	exit 1
fi
export CRIGUARD_BIN=${CRIGUARD_BIN:-$repo/bin/criguard}
if [[ ! -x "$CRIGUARD_BIN" ]]; then
	echo "conformance: $CRIGUARD_BIN missing: run make build (make conformance does)" >&2
	exit 1
fi
export CONFORMANCE_OUT=${CONFORMANCE_OUT:-$repo/_out/conformance}
export CONFORMANCE_DOC=${CONFORMANCE_DOC:-$repo/docs/CONFORMANCE.md}
rm -rf "$CONFORMANCE_OUT"
mkdir -p "$CONFORMANCE_OUT"

cd "$repo"
# grpcnotrace as make build: one compile of the dependencies serves both.
CGO_ENABLED=0 go test -trimpath -tags conformance,grpcnotrace -count=1 -v -timeout 45m -run '^TestConformance$' ./test/conformance/
