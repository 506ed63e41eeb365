#!/usr/bin/env bash
# Builds the v2 node's Debian bookworm root from Debian packages and prints the directory
# holding vmlinuz, initrd.img and root.img. The result depends only on this file (the
# recipe), so it is kept in $CACHE/v2node/<sha256 of this file> and reused.
# Everything a test run changes (criguard, kubelet, configs, the scenario script) comes
# in on the assets disk instead, so editing the tests never rebuilds the image.
set -euo pipefail

readonly CACHE=${CRIGUARD_LAB_SHARED:-/var/cache/criguard-lab}
readonly SUITE=bookworm
readonly MIRROR=${V2NODE_MIRROR:-http://deb.debian.org/debian}
readonly PACKAGES=(
	systemd systemd-sysv dbus udev kmod util-linux mount e2fsprogs iproute2 procps
	coreutils ca-certificates jq containerd runc linux-image-cloud-amd64 docker.io
	conmon crun skopeo
)
# Read by the baked unit below: 254:32, the third virtio disk (run.sh's drive order).
readonly ASSETS_DEV=/dev/vdc

log() { echo "image.sh: $*" >&2; }

hash=$(sha256sum "$0" | cut -c1-16)
out="$CACHE/v2node/$hash"
if [[ -s "$out/root.img" && -s "$out/vmlinuz" && -s "$out/initrd.img" ]]; then
	echo "$out"
	exit 0
fi

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/root"
trap 'rm -rf "$tmp"' EXIT

# The unit the kernel command line starts (systemd.unit=criguard-lab.target): it mounts
# the assets disk itself (an fstab entry times out under TCG waiting for udev) and runs
# the scenario script from it, then powers the VM off whatever the outcome.
customize=$(
	cat <<HOOK
set -e
root=\$1
echo v2node >"\$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tv2node\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"\$root/etc/hosts"
echo 'nameserver 127.0.0.1' >"\$root/etc/resolv.conf"
# A fixed machine id: an empty one means "first boot", and systemd then runs presets.
echo 5f0c2a2e7d1b4c3e9a8f6b5d4c3b2a10 >"\$root/etc/machine-id"
: >"\$root/etc/fstab"
rm -rf "\$root"/usr/share/doc/* "\$root"/usr/share/man/* "\$root"/usr/share/locale/* "\$root"/usr/share/info/*
rm -rf "\$root"/var/cache/apt/*.bin "\$root"/var/lib/apt/lists/*_Packages
cat >"\$root/usr/local/sbin/criguard-lab" <<'SCRIPT'
#!/bin/sh
set -eu
i=0
while [ ! -b $ASSETS_DEV ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
mkdir -p /assets
mount -o ro $ASSETS_DEV /assets
exec /assets/vm/main.sh
SCRIPT
chmod 0755 "\$root/usr/local/sbin/criguard-lab"
cat >"\$root/etc/systemd/system/criguard-lab.service" <<'UNIT'
[Unit]
Description=criguard lab: the scenarios from the assets disk
Wants=dbus.service
After=basic.target dbus.service systemd-udevd.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/criguard-lab
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
UNIT
cat >"\$root/etc/systemd/system/criguard-lab.target" <<'UNIT'
[Unit]
Description=criguard lab
Requires=basic.target criguard-lab.service
After=basic.target criguard-lab.service
AllowIsolate=yes
UNIT
HOOK
)

log "mmdebstrap $SUITE (a minute or two)"
mmdebstrap --variant=minbase --mode=root --quiet \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--customize-hook="$customize" \
	"$SUITE" "$tmp/root" "$MIRROR"

kernel=$(find "$tmp/root/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$tmp/root/boot" -name 'initrd.img-*' | sort -V | tail -n 1)
[[ -n "$kernel" && -n "$initrd" ]] || { log "no kernel or initrd in /boot"; exit 1; }
cp "$kernel" "$tmp/vmlinuz"
cp "$initrd" "$tmp/initrd.img"

# Used space plus 1 GiB for what the runs write (snapshot=on keeps the image clean).
used_mib=$(du -sm "$tmp/root" | cut -f1)
truncate -s "$((used_mib + 1024))M" "$tmp/root.img"
mkfs.ext4 -q -F -L v2node-root -d "$tmp/root" "$tmp/root.img"
rm -rf "$tmp/root"
trap - EXIT
rm -rf "$out"
mv "$tmp" "$out"
log "built $out (${used_mib} MiB used)"
echo "$out"
