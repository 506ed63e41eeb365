# shellcheck shell=bash
# shellcheck disable=SC2154 # DIR, ID, DEV, DATA_DEV, runtime_sock and the helpers are main.sh's
# systemd and criguard on one node (sourced by main.sh): criguard's kubelet drop-in under
# a kubeadm-shaped kubelet unit, and a unit property on the disk criguard throttles.

# dropin_check: kubelet runs as kubeadm starts it (10-kubeadm.conf, the runtime's socket
# in kubeadm-flags.env), and criguard's 20-criguard.conf puts criguard's endpoint last,
# so kubelet calls through criguard.
dropin_check() {
	local pid cmdline
	pid=$(systemctl show -p MainPID --value kubelet)
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
	local kubeadm="--container-runtime-endpoint=unix://$runtime_sock"
	local ours="--container-runtime-endpoint=unix:///run/criguard/criguard.sock --image-service-endpoint=unix:///run/criguard/criguard.sock"
	if [[ $cmdline == *"$kubeadm"*"$ours"* ]]; then
		pass "kubelet/drop-in" "kubeadm's $kubeadm, then 20-criguard.conf's endpoints last"
	else
		fail "kubelet/drop-in" "kubelet runs as \"$cmdline\""
	fi
	local note
	note=$(cli status 2>&1 >/dev/null | grep '^note: kubelet')
	if [[ $note == *"kubelet calls through criguard"* ]]; then
		pass "kubelet/through-criguard" "${note#note: }"
	else
		fail "kubelet/through-criguard" "criguard status says \"${note:-nothing about kubelet}\""
	fi
}

# metric NAME: the value of one series on criguard's metrics endpoint (no curl here).
metric() {
	local body
	exec 3<>/dev/tcp/127.0.0.1/9464 || return 1
	printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
	body=$(cat <&3)
	exec 3<&-
	awk -v n="$1" '$1 == n { print $2 }' <<<"$body"
}

# conflict_check: `systemctl set-property` on a container's scope sets its write limit
# on the disk criguard throttles. systemd owns that key from then on (writing it back
# would flap against every daemon-reload); criguard keeps its other keys, counts the
# conflict and says so in explain. Run on the idle "first" container.
conflict_check() {
	local dir=${DIR[first]} id=${ID[first]} unit
	unit=$(basename "$dir")
	local before
	before=$(iomax "$dir")
	quiet systemctl set-property --runtime "$unit" "IOWriteBandwidthMax=$DATA_DEV 4M"
	info "systemd-conflict/set-property: $unit io.max \"$before\" → \"$(iomax "$dir")\""
	# systemd's bandwidth suffixes are decimal: 4M is 4,000,000 bytes/s.
	local want="$DEV rbps=1048576 wbps=4000000 riops=max wiops=20" t0=$SECONDS
	# criguard's next reconcile pass (every 30 s) restores its own keys.
	if wait_for 90 grep -qx "$want" "$dir/io.max"; then
		pass "systemd-conflict/io.max" "\"$want\" after $((SECONDS - t0)) s: systemd's wbps, criguard's rbps and wiops"
	else
		fail "systemd-conflict/io.max" "got \"$(iomax "$dir")\" 90 s after set-property, want \"$want\""
	fi
	local count
	count=$(metric 'criguard_limit_conflicts_total{with="systemd"}')
	if [[ $count =~ ^[0-9]+$ ]] && ((count >= 1)); then
		pass "systemd-conflict/metric" "criguard_limit_conflicts_total{with=\"systemd\"} $count"
	else
		fail "systemd-conflict/metric" "criguard_limit_conflicts_total{with=\"systemd\"} is \"$count\""
	fi
	local text
	text=$(cli explain "$id" 2>&1)
	if grep -q 'note:.*IOWriteBandwidthMax' <<<"$text"; then
		pass "systemd-conflict/explain" "$(grep 'note:.*IOWriteBandwidthMax' <<<"$text" | sed 's/^ *//' | head -n 1)"
	else
		fail "systemd-conflict/explain" "no note of the unit property: $(tr '\n' ';' <<<"$text")"
	fi
	# A daemon-reload makes systemd write the disk's whole line again from the unit's
	# entries. criguard handed its keys into the unit's entry for the disk, so the
	# reload writes them too: a sampler from before the first of ten reloads to after
	# the last must see criguard's line in every sample (before, systemd's "max" for
	# them lasted until criguard's 2 s recheck).
	info "systemd-conflict/properties: $(systemctl show -P IOReadBandwidthMax "$unit") | $(systemctl show -P IOWriteBandwidthMax "$unit") | $(systemctl show -P IOWriteIOPSMax "$unit")"
	text=$(cli explain "$id" 2>&1)
	if grep -q 'daemon-reload keeps them' <<<"$text"; then
		pass "systemd-conflict/handover-explain" "$(grep 'daemon-reload keeps them' <<<"$text" | sed 's/^ *//' | head -n 1)"
	else
		fail "systemd-conflict/handover-explain" "explain does not say criguard's keys are in the unit's entry: $(tr '\n' ';' <<<"$text")"
	fi
	local samples=/tmp/io.max.samples
	(while :; do iomax "$dir"; sleep 0.1; done) >"$samples" 2>/dev/null &
	local sampler=$! t1=$SECONDS i
	sleep 1
	for i in $(seq 10); do
		quiet systemctl daemon-reload
		sleep 1
	done
	kill "$sampler"
	wait "$sampler" 2>/dev/null
	local line rewritten total
	line=$(iomax "$dir")
	rewritten=$(grep -cvx "$want" "$samples")
	total=$(grep -c . "$samples")
	info "systemd-conflict/daemon-reload: $(sort "$samples" | uniq -c | tr -s ' ' | tr '\n' ';')"
	if [[ $line == "$want" ]] && ((rewritten == 0 && total >= 50)); then
		pass "systemd-conflict/daemon-reload" "$line in all $total samples (every 0.1 s) across 10 daemon-reloads in $((SECONDS - t1)) s"
	else
		fail "systemd-conflict/daemon-reload" "\"$line\" after 10 daemon-reloads; $rewritten of $total samples (every 0.1 s) were not \"$want\""
	fi
}
