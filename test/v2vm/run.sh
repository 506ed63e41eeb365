#!/usr/bin/env bash
# make test-v2: run the cgroup package's root test on a real cgroup v2
# kernel. The host is cgroup v1/hybrid and cannot give v2 "io", so this
# boots Debian's cloud kernel under qemu (TCG, no KVM needed) with an
# initramfs holding busybox, the virtio modules and the static test binary,
# and a raw ext4 image as the virtio disk (254:0 inside).
set -euo pipefail

readonly TIMEOUT_SECONDS=${V2VM_TIMEOUT:-120}
readonly MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)
readonly PASS_MARKER="CRIGUARD-V2VM-RESULT: PASS"
repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/test/v2vm"
GO=${GO:-go}
work="" # the temporary directory, removed on exit unless V2VM_KEEP is set

log() { echo "v2vm: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

newest_cloud_kernel() {
	ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1
}

install_missing() {
	local missing=()
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	[ -n "$(newest_cloud_kernel)" ] || missing+=(linux-image-cloud-amd64)
	dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
	command -v cpio >/dev/null || missing+=(cpio)
	command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
	command -v xz >/dev/null || missing+=(xz-utils)
	command -v zstd >/dev/null || missing+=(zstd)
	[ ${#missing[@]} -eq 0 ] && return
	[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root to install them"
	log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# copy_module NAME KVER DEST: the module uncompressed, as busybox insmod
# wants it; nothing when the kernel has it built in.
copy_module() {
	local name=$1 kver=$2 dest=$3 file
	file=$(find "/lib/modules/$kver/kernel" -name "$name.ko*" | head -n 1)
	if [ -z "$file" ]; then
		grep -q "/$name.ko" "/lib/modules/$kver/modules.builtin" 2>/dev/null ||
			die "module $name neither in /lib/modules/$kver nor built in"
		return
	fi
	case $file in
	*.ko) cp "$file" "$dest/$name.ko" ;;
	*.ko.xz) xz -dc "$file" >"$dest/$name.ko" ;;
	*.ko.zst) zstd -qdc "$file" >"$dest/$name.ko" ;;
	*.ko.gz) gzip -dc "$file" >"$dest/$name.ko" ;;
	*) die "unknown module format $file" ;;
	esac
}

main() {
	install_missing
	local kernel kver root
	kernel=$(newest_cloud_kernel)
	kver=${kernel#/boot/vmlinuz-}
	work=$(mktemp -d /tmp/criguard-v2vm.XXXXXX)
	if [ -z "${V2VM_KEEP:-}" ]; then
		trap 'rm -rf "$work"' EXIT
	else
		log "keeping $work"
	fi
	root="$work/initramfs"
	mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules}

	log "building the cgroup tests as a static binary"
	(cd "$repo" && CGO_ENABLED=0 "$GO" test -c -o "$root/cgroup.test" ./cgroup)
	cp /bin/busybox "$root/bin/busybox"
	file -L "$root/bin/busybox" 2>/dev/null | grep -q 'statically linked' ||
		ldd "$root/bin/busybox" 2>&1 | grep -q 'not a dynamic executable' ||
		die "/bin/busybox is not static (install busybox-static)"
	for module in "${MODULES[@]}"; do
		copy_module "$module" "$kver" "$root/lib/modules"
	done
	install -m 0755 "$here/init.sh" "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"

	truncate -s 128M "$work/disk.img"
	mkfs.ext4 -q -F -b 4096 "$work/disk.img"

	log "booting $kernel (timeout ${TIMEOUT_SECONDS}s)"
	local rc=0 start=$SECONDS
	timeout "$TIMEOUT_SECONDS" qemu-system-x86_64 \
		-accel tcg -m 512M -smp 1 -nographic -no-reboot -net none \
		-kernel "$kernel" -initrd "$work/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 cgroup_no_v1=all psi=1 quiet loglevel=3" \
		-drive "file=$work/disk.img,if=virtio,format=raw" \
		</dev/null >"$work/console.log" 2>&1 || rc=$?
	tr -d '\r' <"$work/console.log" >"$work/console.txt"
	grep -E '^(criguard-io-throttle|criguard-io-pressure|v2vm|--- |    (root|pressure_root)_linux_test)' "$work/console.txt" >&2 || true
	if [ "$rc" -eq 124 ]; then
		tail -n 40 "$work/console.txt" >&2
		die "no result within ${TIMEOUT_SECONDS}s"
	fi
	if ! grep -qx "$PASS_MARKER" "$work/console.txt"; then
		tail -n 60 "$work/console.txt" >&2
		die "the VM did not report PASS (qemu exit $rc)"
	fi
	log "PASS in $((SECONDS - start))s"
}

main "$@"
