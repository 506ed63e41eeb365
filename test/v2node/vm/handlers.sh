# shellcheck shell=bash
# shellcheck disable=SC2154 # A, DEV, LIMITED, DIRECT_WRITE and the helpers are main.sh's
# Issue 23's other OCI runtime handlers (sourced by main.sh): a throttle binds a container
# on containerd 2.4's crun handler (c2) and on CRI-O's runc handler (cr), beside each
# phase's default. kubelet here is standalone (no API server, so no RuntimeClass): the
# pod is made through criguard's socket with `crictl runp --runtime HANDLER`, in the
# namespace the policy throttles.

# The OCI runtime binary and state root behind each phase's handler (containerd2.toml,
# crio_setup): asked whether it made the container.
declare -A HANDLER_STATE=(
	[c2/crun]="/usr/bin/crun --root /run/containerd2/crun/k8s.io"
	[cr/runc]="/usr/sbin/runc --root /run/runc"
)

# install_crun_wrapper: Debian 12's crun 1.8.1 rejects the ociVersion 1.2.x that
# containerd 2.4 and CRI-O 1.34 write (LAB.md): both run crun through this.
install_crun_wrapper() {
	cat >/usr/local/bin/crun-oci10 <<'SH'
#!/bin/sh
prev=
for arg in "$@"; do
	if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then
		[ -f "$arg/config.json" ] && sed -i 's/"ociVersion":[[:space:]]*"[^"]*"/"ociVersion": "1.0.0"/' "$arg/config.json"
	fi
	prev=$arg
done
exec /usr/bin/crun "$@"
SH
	chmod 0755 /usr/local/bin/crun-oci10
}

# handler_check HANDLER BASE_MS: a pod on HANDLER in the throttled namespace, its
# one container mounting /data/handler-HANDLER. Its first command prints its own
# io.max line, its second times 3 MiB written with O_DIRECT; it then sleeps until the
# pod is removed, so the scope can be read from the host meanwhile. Runs last in its
# phase: kubelet kills pods it did not make, so it is stopped for the check.
handler_check() {
	local handler=$1 base=$2 name="handler-$1" t0=$SECONDS
	local data=/data/handler-$1 spec=/run/handler-$1 uid
	rm -rf "$data" "$spec"
	mkdir -p "$data" "$spec"
	uid=$(cat /proc/sys/kernel/random/uuid)
	local slice="kubepods-besteffort-pod${uid//-/_}.slice"
	quiet systemctl stop kubelet
	jq -n --arg name "$name" --arg uid "$uid" --arg slice "$slice" '{
		metadata: {name: $name, namespace: "throttled", uid: $uid, attempt: 0},
		linux: {cgroup_parent: $slice, security_context: {namespace_options: {network: 2}}}}' >"$spec/pod.json"
	# shellcheck disable=SC2016 # expanded by the container's shell
	local script='{
	echo "io.max $(grep "^'"$DEV"' " /sys/fs/cgroup/io.max || echo none)"
	sync; a=$(cut -d" " -f1 /proc/uptime)
	if '"$DIRECT_WRITE"' 2>/dev/null; then
		b=$(cut -d" " -f1 /proc/uptime); awk -v a="$a" -v b="$b" "BEGIN { printf \"write %d\n\", (b - a) * 1000 }"
	else echo "write error"; fi
} >/data/out.tmp 2>&1
mv /data/out.tmp /data/out
trap "exit 0" TERM
sleep 2147483647 & wait'
	jq -n --arg cmd "$script" --arg data "$data" '{
		metadata: {name: "handler"},
		image: {image: "criguard.test/e2e/busybox:latest"},
		command: ["/bin/sh", "-c", $cmd],
		mounts: [{container_path: "/data", host_path: $data}],
		linux: {security_context: {namespace_options: {network: 2}}}}' >"$spec/ctr.json"

	local pod="" ctr="" pid=""
	if pod=$(crictl runp --runtime "$handler" "$spec/pod.json" 2>>"$LOG") &&
		ctr=$(crictl create "$pod" "$spec/ctr.json" "$spec/pod.json" 2>>"$LOG") &&
		quiet crictl start "$ctr"; then
		pid=$(crictl inspect "$ctr" 2>>"$LOG" | jq -r '.info.pid // empty')
	fi
	if [[ -z $pid || ! -d /proc/$pid ]]; then
		fail "$name/start" "no running container on handler \"$handler\" (pod ${pod:-none}, container ${ctr:-none}): $(tail -n 2 "$LOG" | tr '\n' ' ')"
		handler_cleanup "$pod" "$slice" "$data" "$spec"
		return
	fi
	# As learn(): the processes' cgroup, and the scope above crun's container/ child.
	local proc_dir dir
	proc_dir="/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
	dir=${proc_dir%/container}

	# The handler's own OCI runtime made it: the container is in that runtime's state.
	# (The pod status's runtimeHandler is shown, not required: CRI-O 1.34 leaves it empty.)
	local state made on where=in
	read -ra state <<<"${HANDLER_STATE[$run/$handler]:-false}"
	made=$("${state[@]}" state "$ctr" 2>>"$LOG" | jq -r '.status' 2>/dev/null)
	on=$(crictl inspectp "$pod" 2>>"$LOG" | jq -r '.status.runtimeHandler' 2>/dev/null)
	[[ $proc_dir == "$dir" ]] || where="in ${proc_dir##*/}/ of"
	if [[ $made == running ]]; then
		pass "$name/runtime" "\"${state[0]} state\" says running (pod status: runtimeHandler \"$on\"); processes $where ${dir#/sys/fs/cgroup}"
	else
		fail "$name/runtime" "\"${state[*]} state $ctr\" says \"${made:-nothing}\" (pod status: runtimeHandler \"$on\")"
	fi

	local out printed ms
	wait_for 40 test -e "$data/out"
	out=$(cat "$data/out" 2>/dev/null)
	printed=$(sed -n 's/^io.max //p' <<<"$out")
	ms=$(sed -n 's/^write //p' <<<"$out")
	# Where the processes sit in the scope itself, their first command sees the line.
	local got
	got=$(iomax "$dir")
	if [[ $got != "$LIMITED" ]]; then
		fail "$name/io.max" "got \"$got\" in ${dir#/sys/fs/cgroup}/io.max, want \"$LIMITED\""
	elif [[ $proc_dir == "$dir" && $printed != "$LIMITED" ]]; then
		fail "$name/io.max" "the scope has \"$got\", but the container's first command printed \"${printed:-nothing}\""
	else
		pass "$name/io.max" "$got in the scope; the container's first command printed \"${printed:-nothing}\""
	fi
	throttled "$name/direct-write" "${ms:-no answer}" 3000 "$base"
	handler_cleanup "$pod" "$slice" "$data" "$spec"
	info "$name: took $((SECONDS - t0)) s"
}

# handler_cleanup POD SLICE DATA SPEC: the pod and its slice gone, kubelet back.
handler_cleanup() {
	[[ -n $1 ]] && quiet crictl rmp -f "$1"
	quiet systemctl stop "$2"
	rm -rf "$3" "$4"
	quiet systemctl start kubelet
}
