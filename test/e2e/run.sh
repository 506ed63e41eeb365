#!/usr/bin/env bash
# make e2e: the end-to-end suite, as two test processes side by side. Its tests mostly
# wait on throttled writes, and each starts its own runtimes (private roots, sockets and
# pod cgroups: lab.instanceDirs, lab.NewPod), so two halves at once take a little more
# than half the wall time. The longest tests (the NRI plugin, CRI-O, crun, restarts under
# load, burst) make one half, the rest the other. E2E_RUN, a -run regexp, runs the tests
# it names in one process instead. Each half's output is in _out/e2e/ and printed when
# both are done.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out="$repo/_out/e2e"
first_half='^(TestNRI|TestCRIO|TestLabCRIO|TestContainerdCrun|TestRestartUnderLoad.*|TestBurst.*)$'

mkdir -p "$out"
# Static, -trimpath and grpcnotrace as make build: one compile of the dependencies serves both.
(cd "$repo" && CGO_ENABLED=0 go test -trimpath -tags e2e,grpcnotrace -c -o "$out/e2e.test" ./test/e2e) || exit 1
# go test runs a package's tests in the package's directory.
cd "$repo/test/e2e" || exit 1
flags=(-test.v -test.timeout 40m)
if [[ -n ${E2E_RUN:-} ]]; then
	exec "$out/e2e.test" "${flags[@]}" -test.run "$E2E_RUN"
fi

start=$SECONDS
"$out/e2e.test" "${flags[@]}" -test.run "$first_half" >"$out/first.log" 2>&1 &
first=$!
"$out/e2e.test" "${flags[@]}" -test.skip "$first_half" >"$out/second.log" 2>&1 &
second=$!
first_rc=0 second_rc=0
wait "$first" || first_rc=$?
wait "$second" || second_rc=$?

for half in first second; do
	echo "===== e2e, $half half ($out/$half.log)"
	cat "$out/$half.log"
done
echo "===== e2e: first half exit $first_rc, second half exit $second_rc, $((SECONDS - start)) s"
grep -hE '^--- (FAIL|SKIP)' "$out/first.log" "$out/second.log"
((first_rc == 0 && second_rc == 0))
