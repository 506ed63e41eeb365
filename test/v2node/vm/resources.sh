# shellcheck shell=bash
# shellcheck disable=SC2154 # DIR, ID, ticket and the helpers are main.sh's
# Issue 16 on the v2 node (sourced by main.sh, containerd 2 only): the class "soft"
# (memory.high 50% of the 64 MiB limit, pids.max 40, cpu.weight 20) through kubelet's
# own CreateContainer, and memory.high in force.

readonly HOG_HIGH=$((32 * 1024 * 1024))

# cg_value NAME DIR FILE WANT: the file holds WANT.
cg_value() {
	local got
	got=$(cat "$2/$3" 2>/dev/null || echo missing)
	if [[ $got == "$4" ]]; then
		pass "$1" "$3 $got"
	else
		fail "$1" "$3 is \"$got\", want \"$4\""
	fi
}

# event DIR KEY: the count KEY in DIR's memory.events.
event() { awk -v k="$2" '$1 == k { print $2 }' "$1/memory.events" 2>/dev/null; }

resources_checks() {
	local dir=${DIR[hog]} id=${ID[hog]}
	cg_value "resources/memory.max" "$dir" memory.max $((64 * 1024 * 1024))
	cg_value "resources/memory.high" "$dir" memory.high "$HOG_HIGH"
	cg_value "resources/pids.max" "$dir" pids.max 40
	cg_value "resources/cpu.weight" "$dir" cpu.weight 20

	# 128 MiB of page cache in a cgroup whose memory.high is 32 MiB and memory.max 64 MiB:
	# reclaim at memory.high keeps it near 32 MiB; nothing is killed.
	local high0 ms peak
	high0=$(event "$dir" high)
	ms=$(timed hog 'dd if=/dev/zero of=/data/big bs=1M count=128 && sync; rm -f /data/big')
	peak=$(cat "$dir/memory.peak" 2>/dev/null || echo "?")
	local high oom kills detail
	high=$(event "$dir" high) oom=$(event "$dir" oom) kills=$(event "$dir" oom_kill)
	detail="128 MiB written in ${ms} ms: memory.events high ${high0} → ${high}, oom ${oom}, oom_kill ${kills}; memory.peak ${peak}"
	if [[ $ms =~ ^[0-9]+$ && $high =~ ^[0-9]+$ ]] && ((high > ${high0:-0})) && [[ $oom == 0 && $kills == 0 ]]; then
		pass "resources/memory.high-in-force" "$detail"
	else
		fail "resources/memory.high-in-force" "$detail"
	fi
	if [[ $(cid hog) == "$id" ]]; then
		pass "resources/not-killed" "the container ${id:0:12} still runs"
	else
		fail "resources/not-killed" "the container ${id:0:12} no longer runs (now \"$(cid hog)\")"
	fi

	# The forker's first command starts 60 sleeps against pids.max 40: the kernel refuses
	# the forks past it and counts them in pids.events.
	local fdir=${DIR[forker]} fmax fcur
	wait_for 60 bash -c "awk '\$1 == \"max\" && \$2 > 0 { ok = 1 } END { exit !ok }' $fdir/pids.events"
	fmax=$(awk '$1 == "max" { print $2 }' "$fdir/pids.events") fcur=$(cat "$fdir/pids.current")
	detail="60 sleeps asked for: pids.current ${fcur}, pids.events max ${fmax}"
	if [[ $fmax =~ ^[0-9]+$ && $fcur =~ ^[0-9]+$ ]] && ((fmax > 0 && fcur <= 40)); then
		pass "resources/pids.max-in-force" "$detail"
	else
		fail "resources/pids.max-in-force" "$detail"
	fi

	cpu_ratio_check

	# explain reads each one back.
	local text
	text=$(cli explain "$id" 2>&1)
	if grep -q "memory.high wanted $HOG_HIGH, in force $HOG_HIGH (in sync)" <<<"$text" &&
		grep -q "pids.max wanted 40, in force 40 (in sync)" <<<"$text" &&
		grep -q "cpu.weight wanted 20, in force 20 (in sync)" <<<"$text"; then
		pass "resources/explain" "$(grep -E 'memory.high|pids.max|cpu.weight' <<<"$text" | sed 's/^ *//' | tr '\n' ';')"
	else
		fail "resources/explain" "$(tr '\n' ';' <<<"$text")"
	fi
}

# cpu_usage DIR: the cgroup's CPU time so far, in microseconds.
cpu_usage() { awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"; }

# cpu_ratio_check: hog and its neighbour spin on the same CPU for 12 s; over 5 s in the
# middle, hog's share of the CPU against the neighbour's follows their cpu.weight.
cpu_ratio_check() {
	local low=${DIR[hog]} high=${DIR[neighbour]} wl wh
	wl=$(cat "$low/cpu.weight") wh=$(cat "$high/cpu.weight")
	local spin='timeout 12 taskset 1 sh -c "while :; do :; done"; true' tl th
	post hog "$spin"
	tl=$ticket
	post neighbour "$spin"
	th=$ticket
	sleep 4 # the loops pick a script up within 0.2 s, slower under TCG
	local l0 h0 l1 h1
	l0=$(cpu_usage "$low") h0=$(cpu_usage "$high")
	sleep 5
	l1=$(cpu_usage "$low") h1=$(cpu_usage "$high")
	collect hog "$tl" >/dev/null
	collect neighbour "$th" >/dev/null
	local verdict
	verdict=$(awk -v l=$((l1 - l0)) -v h=$((h1 - h0)) -v wl="$wl" -v wh="$wh" 'BEGIN {
		if (h <= 0) { print "FAIL neighbour got no CPU"; exit }
		r = l / h; w = wl / wh
		d = sprintf("hog (cpu.weight %d) %.2f s, neighbour (cpu.weight %d) %.2f s of CPU: ratio %.2f, weights %.2f", wl, l / 1e6, wh, h / 1e6, r, w)
		# Less CPU than the neighbour, and near what the weights give.
		print ((r < 0.8 && r <= w * 1.5 + 0.05) ? "PASS " : "FAIL ") d }')
	if [[ $verdict == PASS* ]]; then
		pass "resources/cpu.weight-ratio" "${verdict#PASS }"
	else
		fail "resources/cpu.weight-ratio" "${verdict#FAIL }"
	fi
}
