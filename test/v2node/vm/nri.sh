# shellcheck shell=bash
# shellcheck disable=SC2154 # the helpers are main.sh's
# Issue 25 on the platform (sourced by main.sh): kubelet talks straight to containerd
# 2.4 on its own socket, without criguard's drop-in, and criguard runs as containerd's
# NRI plugin (`criguard nri`; NRI is on by default in containerd 2.x) with the same
# policy, state directory and settings (/etc/default/criguard).

# nri_start: the proxy stopped and kubelet put back on containerd's socket, then the
# plugin started and registered.
nri_start() {
	quiet systemctl stop criguard.socket criguard.service
	rm -f /etc/systemd/system/kubelet.service.d/20-criguard.conf
	systemctl daemon-reload
	quiet systemd-run --unit criguard-nri -p EnvironmentFile=/etc/default/criguard /usr/bin/criguard nri || return 1
	wait_for 60 bash -c "journalctl -q -u criguard-nri --no-pager | grep -q 'NRI: synchronized'" || return 1
	quiet systemctl restart kubelet
}

# nri_stop: the plugin gone, the proxy and kubelet's drop-in back, as the package has
# them.
nri_stop() {
	quiet systemctl stop criguard-nri
	install -m 0644 /usr/share/doc/criguard/examples/20-criguard.conf /etc/systemd/system/kubelet.service.d/
	systemctl daemon-reload
	quiet systemctl start criguard.socket
}

# nri_direct_check: kubelet's runtime calls reach containerd without criguard, which
# nevertheless throttles (the checks that follow).
nri_direct_check() {
	local args
	args=$(tr '\0' ' ' </proc/"$(systemctl show -p MainPID --value kubelet)"/cmdline)
	if [[ $args != *criguard* ]] && [[ $args == *"--container-runtime-endpoint=unix://$runtime_sock"* ]]; then
		pass "kubelet/direct" "kubelet calls containerd on its own socket: criguard is not in its path"
	else
		fail "kubelet/direct" "kubelet's command line: $args"
	fi
}
