# shellcheck shell=bash
# shellcheck disable=SC2154 # A and the helpers are main.sh's
# Issue 23's Docker row (sourced by main.sh): Debian's dockerd with the systemd cgroup
# driver, cri-dockerd in front of it, criguard in front of cri-dockerd, the same kubelet.
# CRI has no blkio field and cri-dockerd drops the create's io.max (Docker's API takes
# no unified resources), so the first-instruction check proves criguard's pre-start
# drop-in: systemd puts the limits into docker-<id>.scope as it makes it.

readonly CRI_DOCKERD_SOCK=/run/cri-dockerd.sock

# docker_setup: dockerd's configuration and cri-dockerd's unit; dockerd runs on
# Debian's containerd 1.6 (containerd.service), as the docker.io package has it.
docker_setup() {
	mkdir -p /etc/docker
	# No bridge or iptables: the VM has no network and the pods use the host's. Live
	# restore keeps the containers through a restart of dockerd, as nodes run it.
	cat >/etc/docker/daemon.json <<'JSON'
{
  "exec-opts": ["native.cgroupdriver=systemd"],
  "bridge": "none",
  "iptables": false,
  "ip-masq": false,
  "live-restore": true,
  "storage-driver": "overlay2"
}
JSON
	install -m 0755 "$A/bin/cri-dockerd" /usr/local/bin/
	cat >/etc/systemd/system/cri-dockerd.service <<UNIT
[Unit]
Description=cri-dockerd: CRI for dockerd
Requires=docker.service
After=docker.service

[Service]
ExecStart=/usr/local/bin/cri-dockerd --container-runtime-endpoint unix://$CRI_DOCKERD_SOCK --network-plugin= --pod-infra-container-image criguard.test/e2e/pause:latest --cri-dockerd-root-directory /var/lib/cri-dockerd
Restart=on-failure
UNIT
	systemctl daemon-reload
}

# docker_images: the lab's busybox root file system, imported as the two images the
# pods name (pause's PID 1 exits on SIGTERM, as in the host's lab).
docker_images() {
	quiet docker import --change 'CMD ["sh"]' "$A/images/rootfs.tar" criguard.test/e2e/busybox:latest || return 1
	quiet docker import --change 'ENTRYPOINT ["/bin/sh", "-c", "trap \"exit 0\" TERM; sleep 2147483647 & wait"]' \
		"$A/images/rootfs.tar" criguard.test/e2e/pause:latest
}
