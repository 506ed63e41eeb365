#!/bin/bash
# Runs inside the v2 node VM (started by criguard-lab.service from the assets disk, which
# is mounted at /assets). For each containerd in RUNTIMES: containerd → criguard (the
# example systemd unit) → a standalone kubelet with the systemd driver and static pods,
# then the scenarios. Every check prints one line on the console:
#   V2NODE PASS|FAIL <runtime>/<check>: <detail>
# and the run ends with "V2NODE-RESULT: PASS" or "V2NODE-RESULT: FAIL", which
# test/v2node/run.sh parses. Unset -e on purpose: a failed check must not stop the rest.
set -uo pipefail

readonly A=/assets
readonly DATA_DEV=/dev/vdb # 254:16, the disk the policy throttles
readonly DEV=254:16
readonly MANIFESTS=/etc/kubernetes/manifests
readonly LOG=/var/log/v2node.log
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
. "$A/vm/env" # RUNTIMES, set by run.sh

failed=0 phase_failed=0
run="" # the runtime under test: c2 or c16

# Each line ends with the VM's uptime, to show where the time goes.
say() { echo "V2NODE $* [$(cut -d. -f1 /proc/uptime) s]" >/dev/console; }
pass() { say "PASS $run/$1: $2"; }
fail() {
	say "FAIL $run/$1: $2"
	failed=1 phase_failed=1
}
info() { say "INFO $run/$*"; }
# quiet CMD...: the command's output goes to the log, kept for the dump on failure.
quiet() { "$@" >>"$LOG" 2>&1; }

# wait_for SECONDS CMD...: polls CMD every half second until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

crictl() { /usr/local/bin/crictl "$@"; }

# cid NAME: the running container named exactly NAME.
cid() { crictl ps --state running --name "^$1\$" -q 2>/dev/null | head -n 1; }
running() { [[ -n $(cid "$1") ]]; }

# cgdir ID: the container's cgroup directory, from its init process (not from criguard).
cgdir() {
	local pid
	pid=$(crictl inspect "$1" 2>/dev/null | jq -r '.info.pid')
	[[ -n $pid && $pid != null ]] || return 1
	echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
}

# iomax DIR: the io.max line of the throttled disk, or "none".
iomax() { grep "^$DEV " "$1/io.max" 2>/dev/null || echo none; }

# timed ID COMMAND: runs COMMAND with sh in the container and prints how long it took
# in milliseconds, measured inside the container (/proc/uptime), so exec's own cost
# under TCG does not count. A failed COMMAND prints "error".
timed() {
	# shellcheck disable=SC2016 # expanded by the container's shell
	crictl exec "$1" sh -c 'sync; a=$(cut -d" " -f1 /proc/uptime)
if eval "$1" >/dev/null 2>&1; then b=$(cut -d" " -f1 /proc/uptime); awk -v a="$a" -v b="$b" "BEGIN { printf \"%d\n\", (b - a) * 1000 }"; else echo error; fi' sh "$2" 2>>"$LOG"
}

readonly DIRECT_WRITE='dd if=/dev/zero of=/data/direct bs=1M count=3 oflag=direct'
readonly BUFFERED_WRITE='rm -f /data/buffered; dd if=/dev/zero of=/data/buffered bs=1M count=3 && sync'
readonly DIRECT_READ='dd if=/data/src of=/dev/null bs=1M count=3 iflag=direct'
readonly IOPS_WRITE='dd if=/dev/zero of=/data/iops bs=4k count=60 oflag=direct conv=notrunc'

# throttled NAME MS EXPECTED_MS BASE_MS: the limit binds (at least 80% of the time the
# limit gives) and nothing else does (no more than the limit plus twice the unthrottled
# time of the same I/O in this VM, plus 3 s of TCG jitter).
throttled() {
	local name=$1 ms=$2 want=$3 base=$4
	local detail="${ms} ms (limit gives ${want} ms, unthrottled ${base} ms)"
	if [[ $ms =~ ^[0-9]+$ ]] && ((ms * 10 >= want * 8 && ms <= want + 2 * base + 3000)); then
		pass "$name" "$detail"
	else
		fail "$name" "$detail"
	fi
}

# has_line NAME DIR WANT: the io.max line of DIR is WANT.
has_line() {
	local got
	got=$(iomax "$2")
	if [[ $got == "$3" ]]; then
		pass "$1" "$got"
	else
		fail "$1" "got \"$got\" in ${2#/sys/fs/cgroup}/io.max, want \"$3\""
	fi
}

# policy WRITE_BPS: the policy, with the "limited" class writing at WRITE_BPS.
policy() {
	cat <<EOF
# /dev/vdb (254:16) is mounted at /data, where every pod's hostPath lives.
device "data" {
  path = "$DATA_DEV"
}

class "limited" {
  io {
    device     = "data"
    read_bps   = "1MiB"
    write_bps  = "$1"
    write_iops = 20
  }
}

class "shared" {
  io {
    device    = "data"
    write_bps = "1MiB"
  }
}

rule "throttled" {
  match {
    namespaces = ["throttled"]
  }
  class = "limited"
}

rule "podscope" {
  match {
    namespaces = ["podscope"]
  }
  class = "shared"
  scope = "pod"
}
EOF
}
# set_policy WRITE_BPS: replaces the file by rename, as editors do, so criguard never
# reads it half written.
set_policy() {
	policy "$1" >/etc/criguard/policy.hcl.new
	mv /etc/criguard/policy.hcl.new /etc/criguard/policy.hcl
}
readonly LIMITED="$DEV rbps=1048576 wbps=1048576 riops=max wiops=20"
readonly LIMITED_EDITED="$DEV rbps=1048576 wbps=262144 riops=max wiops=20"
readonly SHARED="$DEV rbps=max wbps=1048576 riops=max wiops=max"

# --- the node -------------------------------------------------------------------------

setup_node() {
	mkdir -p /data "$MANIFESTS" /etc/criguard /opt/containerd2/bin /etc/containerd
	mount "$DATA_DEV" /data || return 1
	install -m 0755 "$A/bin/criguard" "$A/bin/crictl" "$A/bin/kubelet" /usr/local/bin/
	install -m 0755 "$A/bin/containerd2" /opt/containerd2/bin/containerd
	install -m 0755 "$A/bin/containerd-shim-runc-v2" /opt/containerd2/bin/
	install -m 0644 "$A/vm/containerd16.toml" /etc/containerd/config.toml
	install -m 0644 "$A/vm/containerd2.toml" /etc/containerd/containerd2.toml
	install -m 0644 "$A/vm/crictl.yaml" /etc/crictl.yaml
	install -D -m 0644 "$A/vm/kubelet.yaml" /etc/kubernetes/kubelet.yaml
	install -m 0644 "$A/criguard.service" "$A/vm/containerd2.service" "$A/vm/kubelet.service" \
		/etc/systemd/system/
	set_policy 1MiB
	systemctl daemon-reload
}

# start_runtime c2|c16: containerd, the images, criguard in front of it, kubelet.
start_runtime() {
	local unit sock
	case $1 in
	c2) unit=containerd2 sock=/run/containerd2/containerd.sock ;;
	c16) unit=containerd sock=/run/containerd/containerd.sock ;;
	esac
	runtime_unit=$unit runtime_sock=$sock
	cat >/etc/default/criguard <<EOF
CRIGUARD_RUNTIME_ENDPOINT=unix://$sock
CRIGUARD_CONTAINERD_ADDRESS=$sock
CRIGUARD_LOG_FORMAT=text
EOF
	quiet systemctl start "$unit" || return 1
	wait_for 60 test -S "$sock" || return 1
	local image
	for image in busybox pause; do
		quiet ctr -a "$sock" -n k8s.io images import "$A/images/$image.oci.tar" || return 1
	done
	quiet systemctl restart criguard || return 1
	wait_for 60 crictl version || return 1
	quiet systemctl restart kubelet || return 1
	info "runtime $(crictl version | sed -n 's/^RuntimeName: *//p;s/^RuntimeVersion: *//p' | tr '\n' ' ')"
}

# stop_runtime: pods gone, then kubelet, criguard and containerd stopped, so the next
# runtime starts on a clean node.
stop_runtime() {
	rm -f "$MANIFESTS"/*.yaml
	# shellcheck disable=SC2016 # expanded by that bash
	wait_for 120 bash -c '[[ -z $(/usr/local/bin/crictl ps -q) ]]'
	quiet systemctl stop kubelet
	quiet crictl -r "unix://$runtime_sock" rmp -fa
	wait_for 60 bash -c '! compgen -G "/sys/fs/cgroup/kubepods.slice/*/*-pod*.slice" >/dev/null'
	quiet systemctl stop criguard "$runtime_unit"
}

# dump: the end of every daemon's journal, for a failed run.
dump() {
	local unit
	for unit in "$runtime_unit" criguard kubelet; do
		echo "----- journal of $unit" >/dev/console
		journalctl -q -u "$unit" --no-pager | tail -n 40 >/dev/console
	done
	echo "----- $LOG" >/dev/console
	tail -n 30 "$LOG" >/dev/console
}

# --- scenarios ------------------------------------------------------------------------

scenarios() {
	local pod
	for pod in free throttled first shared; do
		sed "s/@RUN@/$run/" "$A/vm/pods/$pod.yaml" >"$MANIFESTS/$pod.yaml"
	done
	mkdir -p /data/free /data/throttled /data/shared
	# Read sources and IOPS targets, written from outside any pod.
	for pod in free throttled; do
		dd if=/dev/urandom of="/data/$pod/src" bs=1M count=3 oflag=direct status=none
		dd if=/dev/zero of="/data/$pod/iops" bs=4k count=60 oflag=direct status=none
	done
	local t0=$SECONDS
	local c
	for c in free throttled first share-a share-b; do
		if ! wait_for 300 running "$c"; then
			fail "start" "container $c not running after 300 s"
			return
		fi
	done
	pass "start" "5 containers of 4 static pods running after $((SECONDS - t0)) s"

	local free thr first
	free=$(cid free) thr=$(cid throttled) first=$(cid first)
	local free_dir thr_dir
	free_dir=$(cgdir "$free") thr_dir=$(cgdir "$thr")
	if [[ $thr_dir =~ ^/sys/fs/cgroup/kubepods\.slice/kubepods-besteffort\.slice/kubepods-besteffort-pod[0-9a-f_]+\.slice/cri-containerd-$thr\.scope$ ]]; then
		pass "cgroup" "made by kubelet and systemd: ${thr_dir#/sys/fs/cgroup}"
	else
		fail "cgroup" "unexpected cgroup: ${thr_dir:-none}"
	fi

	# First instruction: the first command's output is the limit.
	local logs
	logs=$(wait_for 60 bash -c "/usr/local/bin/crictl logs $first 2>&1 | grep -q first-end" &&
		crictl logs "$first" 2>&1)
	if grep -qx "$LIMITED" <<<"$logs"; then
		pass "first-instruction" "first command printed \"$LIMITED\""
	else
		fail "first-instruction" "first command printed \"$(grep -v first-end <<<"$logs" | tr '\n' ' ')\", want \"$LIMITED\" (the scope's io.max is now \"$(iomax "$(cgdir "$first")")\")"
	fi

	# The unmatched pod, measured first: it calibrates what TCG gives unthrottled.
	has_line "free/io.max" "$free_dir" none
	local b_dw b_bw b_dr b_io
	b_dw=$(timed "$free" "$DIRECT_WRITE")
	b_bw=$(timed "$free" "$BUFFERED_WRITE")
	b_dr=$(timed "$free" "$DIRECT_READ")
	b_io=$(timed "$free" "$IOPS_WRITE")
	local b slowest=0
	for b in "$b_dw" "$b_bw" "$b_dr" "$b_io"; do
		[[ $b =~ ^[0-9]+$ ]] || b=99999
		((b > slowest)) && slowest=$b
	done
	local detail="3 MiB direct write ${b_dw} ms, buffered+sync ${b_bw} ms, direct read ${b_dr} ms, 60×4 KiB direct ${b_io} ms"
	# Fast means below what the throttled checks require (80% of 3 s).
	if ((slowest < 2400)); then
		pass "free/fast" "$detail"
	else
		fail "free/fast" "$detail: not clearly faster than the 3 s the limits give"
	fi

	# A throttled namespace: 1 MiB/s read and write, 20 write IOPS.
	has_line "throttled/io.max" "$thr_dir" "$LIMITED"
	throttled "throttled/direct-write" "$(timed "$thr" "$DIRECT_WRITE")" 3000 "$b_dw"
	throttled "throttled/buffered-write+sync" "$(timed "$thr" "$BUFFERED_WRITE")" 3000 "$b_bw"
	throttled "throttled/direct-read" "$(timed "$thr" "$DIRECT_READ")" 3000 "$b_dr"
	throttled "throttled/write-iops" "$(timed "$thr" "$IOPS_WRITE")" 3000 "$b_io"

	pod_scope
	survival "$thr" "$b_dw"
}

# pod_scope: two containers of one pod writing 3 MiB each at once share 1 MiB/s, so the
# later one finishes after about 6 s (each alone: 3 s).
pod_scope() {
	local a b slice
	a=$(cid share-a) b=$(cid share-b)
	slice=$(dirname "$(cgdir "$a")")
	has_line "podscope/slice-io.max" "$slice" "$SHARED"
	info "podscope/containers io.max: share-a \"$(iomax "$(cgdir "$a")")\", share-b \"$(iomax "$(cgdir "$b")")\""
	local out=/run/v2node-share
	timed "$a" 'dd if=/dev/zero of=/data/a bs=1M count=3 oflag=direct' >"$out.a" &
	timed "$b" 'dd if=/dev/zero of=/data/b bs=1M count=3 oflag=direct' >"$out.b" &
	wait
	local ta tb
	ta=$(cat "$out.a") tb=$(cat "$out.b")
	if [[ $ta =~ ^[0-9]+$ && $tb =~ ^[0-9]+$ ]] && ((ta > tb ? ta * 10 >= 6000 * 8 : tb * 10 >= 6000 * 8)); then
		pass "podscope/shared-budget" "3 MiB + 3 MiB at once: ${ta} ms and ${tb} ms (one 1 MiB/s budget gives 6000 ms for both)"
	else
		fail "podscope/shared-budget" "3 MiB + 3 MiB at once: ${ta} ms and ${tb} ms, want the later one ≥ 4800 ms (one 1 MiB/s budget)"
	fi
}

# survival ID BASE_MS: after each disturbance, the limit is still in io.max and binds.
survival() {
	local id=$1 base=$2 dir slice step
	dir=$(cgdir "$id")
	slice=$(dirname "$dir")
	for step in daemon-reload set-property restart-kubelet restart-containerd restart-criguard; do
		case $step in
		daemon-reload) quiet systemctl daemon-reload ;;
		set-property) quiet systemctl set-property "$(basename "$slice")" CPUWeight=50 ;;
		restart-kubelet) quiet systemctl restart kubelet ;;
		restart-containerd)
			quiet systemctl restart "$runtime_unit"
			wait_for 60 crictl -r "unix://$runtime_sock" version
			;;
		restart-criguard)
			quiet systemctl restart criguard
			wait_for 60 crictl version
			;;
		esac
		sleep 2
		if [[ $(cid throttled) != "$id" ]]; then
			fail "survive/$step" "container $id is no longer the running 'throttled' container"
			continue
		fi
		has_line "survive/$step/io.max" "$dir" "$LIMITED"
		throttled "survive/$step/direct-write" "$(timed "$id" "$DIRECT_WRITE")" 3000 "$base"
	done

	# A policy edit: 1 MiB/s → 256 KiB/s; 1 MiB then takes 4 s (at the old limit: 1 s).
	set_policy 256KiB
	local t0=$SECONDS
	if wait_for 60 grep -qx "$LIMITED_EDITED" "$dir/io.max"; then
		pass "survive/policy-edit/io.max" "\"$LIMITED_EDITED\" after $((SECONDS - t0)) s"
	else
		fail "survive/policy-edit/io.max" "got \"$(iomax "$dir")\" 60 s after the edit, want \"$LIMITED_EDITED\""
	fi
	throttled "survive/policy-edit/direct-write" \
		"$(timed "$id" 'dd if=/dev/zero of=/data/direct bs=256k count=4 oflag=direct')" 4000 "$((base / 3))"
	set_policy 1MiB
}

main() {
	say "INFO vm: booted in $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r), $(stat -fc %T /sys/fs/cgroup)"
	if ! setup_node; then
		say "FAIL vm/setup: could not set the node up"
		failed=1
	fi
	for run in $RUNTIMES; do
		local t0=$SECONDS
		phase_failed=0
		if start_runtime "$run"; then
			scenarios
		else
			fail "start" "containerd, criguard or kubelet did not start"
		fi
		((phase_failed)) && dump
		info "phase took $((SECONDS - t0)) s"
		stop_runtime
	done
	if ((failed)); then
		echo "V2NODE-RESULT: FAIL" >/dev/console
	else
		echo "V2NODE-RESULT: PASS" >/dev/console
	fi
}

main
