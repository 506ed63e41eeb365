# shellcheck shell=bash
# shellcheck disable=SC2154 # A and the helpers are main.sh's
# Issue 23's CRI-O row (sourced by main.sh): CRI-O 1.34 with cgroup_manager = "systemd"
# and crun as its default handler, OpenShift's node stack, behind criguard and the same
# kubelet. crun puts the container's processes in <scope>/container; criguard's limit
# is on crio-<id>.scope and binds them from there (main.sh: DIR and PROC_DIR).

readonly CRIO_SOCK=/run/crio/crio.sock

# crio_setup: CRI-O's binaries, configuration and unit; the images copied into its
# storage with skopeo (CRI-O imports no tar, and the VM has no registry).
crio_setup() {
	install -m 0755 "$A/bin/crio" "$A/bin/pinns" /usr/local/bin/
	mkdir -p /etc/crio /etc/cni/net.d /var/lib/crio
	echo '{"default": [{"type": "insecureAcceptAnything"}]}' >/etc/crio/policy.json
	cat >/etc/crio/crio.conf <<CONF
[crio]
root = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
storage_driver = "overlay"
log_dir = "/var/log/crio/pods"
clean_shutdown_file = "/var/lib/crio/clean.shutdown"

[crio.api]
listen = "$CRIO_SOCK"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "crun"
cgroup_manager = "systemd"
selinux = false
pinns_path = "/usr/local/bin/pinns"
hooks_dir = []
default_mounts_file = ""
irqbalance_config_restore_file = "disable"

# crun-oci10: handlers.sh's wrapper for Debian's crun, installed by setup_node.
[crio.runtime.runtimes.crun]
runtime_path = "/usr/local/bin/crun-oci10"
runtime_type = "oci"
runtime_root = "/run/crun"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "system.slice"

[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"
monitor_cgroup = "system.slice"

[crio.image]
pause_image = "criguard.test/e2e/pause:latest"
# The lab's pause image runs its own command, no /pause binary.
pause_command = ""
signature_policy = "/etc/crio/policy.json"

[crio.network]
network_dir = "/etc/cni/net.d"
plugin_dirs = ["/usr/lib/cni"]

[crio.metrics]
enable_metrics = false

[crio.nri]
enable_nri = false
CONF
	cat >/etc/systemd/system/crio.service <<'UNIT'
[Unit]
Description=CRI-O

[Service]
Type=notify
ExecStart=/usr/local/bin/crio --config /etc/crio/crio.conf --log-level info
Restart=on-failure
TimeoutStartSec=5min
UNIT
	systemctl daemon-reload
	local image
	for image in busybox pause; do
		quiet skopeo copy --quiet --insecure-policy "oci-archive:$A/images/$image.oci.tar" \
			"containers-storage:[overlay@/var/lib/containers/storage+/run/containers/storage]criguard.test/e2e/$image:latest" ||
			return 1
	done
}
