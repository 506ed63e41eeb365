#!/usr/bin/env bash
# make e2e-v2: a real cgroup v2 + systemd node in a qemu VM. A Debian bookworm root
# (image.sh, cached by recipe) boots systemd on the unified hierarchy; the test unit runs
# vm/main.sh from an assets disk holding criguard's .deb (make package), crictl, kubelet
# (kubelet.sh, cached by version), containerd 2 and the local OCI images. Inside, criguard
# is installed with dpkg -i by README.md's install block, and a standalone kubelet
# (systemd driver, static pods) talks to it in front of containerd 2.x, then dockerd
# behind cri-dockerd, then CRI-O with crun, then containerd 2.x with criguard as its NRI
# plugin (containerd 1.6 with V2NODE_RUNTIMES).
# The VM prints one line per check on the serial console; any FAIL fails this script.
set -euo pipefail

readonly TIMEOUT_SECONDS=${V2NODE_TIMEOUT:-2400}
# containerd 1.6 (c16) runs on request only: CI's hour has each runtime once on v2.
readonly RUNTIMES=${V2NODE_RUNTIMES:-c2 dk cr n2}
# V2NODE_FULL=1 (make e2e-v2-full) adds the checks CI's half hour leaves out: five
# restarts of criguard under load on containerd 2 (the upgrade under load, one restart
# behind the same socket, stays in CI).
readonly FULL=${V2NODE_FULL:-}
# The sharing checks' disk (vde), in bytes per second for reads and writes together.
readonly SHARE_DISK_BPS=4194304
repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/test/v2node"
lab="$repo/test/e2e/.cache"
work="" # the temporary directory, removed on exit unless V2NODE_KEEP is set

log() { echo "v2node: $*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}

install_missing() {
	local missing=() p
	for p in mmdebstrap qemu-system-x86 e2fsprogs fdisk; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to install them"
	log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# mk ARGS...: the project's Makefile, quietly (its output goes to the log on failure).
mk() {
	make -s --no-print-directory -C "$repo" "$@"
}

# packages DIR: criguard's .deb as `make package` builds it in DIR/pkg (the one the node
# installs), and in DIR/pkg/previous the same tree built as an older version (the
# upgrade test's starting point: "~previous" sorts before the real version).
packages() {
	local dir=$1 version binary out
	out=$(mktemp)
	version=$(mk --eval 'print-%: ; @echo $($*)' print-PKG_VERSION)
	binary=$(mk --eval 'print-%: ; @echo $($*)' print-VERSION)
	mkdir -p "$dir/pkg/previous"
	mk package PKG_FORMATS=deb PKG_VERSION="$version~previous" VERSION="$binary-previous" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "make package (the previous version) failed"; }
	cp "$repo"/_out/package/criguard_*.deb "$dir/pkg/previous/"
	# Built last, so _out/package keeps the real one.
	mk package PKG_FORMATS=deb >"$out" 2>&1 || { cat "$out" >&2; die "make package failed"; }
	cp "$repo"/_out/package/criguard_*.deb "$dir/pkg/"
	rm -f "$out"
	echo "VERSION='$version' PREVIOUS='$version~previous'" >>"$dir/vm/env"
	log "packages $(basename "$dir"/pkg/criguard_*.deb) and $(basename "$dir"/pkg/previous/criguard_*.deb)"
}

# install_block DIR: README.md's install block, which the node runs as it stands (the
# README then says exactly what the VM does). It follows the marker line.
install_block() {
	awk '/^<!-- v2node: install -->$/ { marked = 1; next }
		marked && /^```sh$/ { inside = 1; next }
		inside && /^```$/ { exit }
		inside { print }' "$repo/README.md" >"$1/vm/install.sh"
	grep -q '^dpkg -i ' "$1/vm/install.sh" ||
		die "README.md: no sh block with dpkg -i after the line <!-- v2node: install -->"
}

# mdadm DIR: Debian's mdadm binary in DIR/bin, for the md volume (volumes.sh). It comes
# from the .deb (apt-get download, cached outside the clone by version), not from the
# image: adding it there would rebuild the image. The image has its libudev1 and libc.
mdadm_binary() {
	local dir=$1 cache=${CRIGUARD_LAB_SHARED:-/var/cache/criguard-lab}/mdadm version deb
	version=$(apt-cache show --no-all-versions mdadm 2>/dev/null | sed -n 's/^Version: //p')
	[[ -n $version ]] || die "apt-cache knows no mdadm: run apt-get update"
	deb="$cache/mdadm_${version}_amd64.deb"
	if [[ ! -s $deb ]]; then
		mkdir -p "$cache/download"
		rm -f "$cache"/download/mdadm_*.deb
		(cd "$cache/download" && apt-get download -q "mdadm=$version" >/dev/null 2>&1) ||
			die "apt-get download mdadm=$version failed"
		mv "$cache"/download/mdadm_*.deb "$deb"
	fi
	dpkg-deb -x "$deb" "$work/mdadm"
	install -m 0755 "$work/mdadm/sbin/mdadm" "$dir/bin/mdadm"
	rm -rf "$work/mdadm"
}

# assets DIR KUBELET: the assets disk's tree (mounted read-only at /assets in the VM).
assets() {
	local dir=$1 kubelet=$2 f
	mkdir -p "$dir/bin" "$dir/images" "$dir/vm"
	for f in "$lab/bin/crictl" "$lab/bin/containerd2" "$lab/bin/containerd-shim-runc-v2" "$lab/bin/cri-dockerd" \
		"$lab/bin/crio" "$lab/bin/pinns" "$lab/images/busybox.oci.tar" "$lab/images/pause.oci.tar" "$lab/images/rootfs.tar"; do
		[[ -s $f ]] || die "$f missing: run make lab"
	done
	cp "$lab/bin/crictl" "$lab/bin/containerd2" "$lab/bin/containerd-shim-runc-v2" "$lab/bin/cri-dockerd" \
		"$lab/bin/crio" "$lab/bin/pinns" "$dir/bin/"
	# The restart check's load (test/e2e/load, as the host's restart tests drive it);
	# grpcnotrace as make build, so that gRPC is compiled once.
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -o "$dir/bin/criload" ./test/v2node/criload) ||
		die "building criload failed"
	# The disk-sharing checks' load (vm/share.sh): O_DIRECT readers and writers.
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$dir/bin/iolat" ./test/v2node/iolat) ||
		die "building iolat failed"
	cp "$kubelet" "$dir/bin/kubelet"
	mdadm_binary "$dir"
	cp "$lab/images/busybox.oci.tar" "$lab/images/pause.oci.tar" "$lab/images/rootfs.tar" "$dir/images/"
	cp -r "$here/vm/." "$dir/vm/"
	printf "RUNTIMES='%s'\nFULL='%s'\nSHARE_DISK_BPS=%s\n" "$RUNTIMES" "$FULL" "$SHARE_DISK_BPS" >"$dir/vm/env"
	install_block "$dir"
	packages "$dir"
}

# share_disk WORK: the disk of the sharing checks (vm/share.sh), throttled by qemu itself
# to SHARE_DISK_BPS so that two writers really contend for it under TCG. Its file system
# is made here, initialised in full (no lazy init writing behind the measurements), with
# a 16 MiB file of random data per pod (random: mkfs.ext4 -d would leave zeros as holes).
share_disk() {
	local tree=$1/share name
	for name in w1 w4 reader flood; do
		mkdir -p "$tree/$name"
		head -c 16M /dev/urandom >"$tree/$name/data"
	done
	truncate -s 256M "$1/share.img"
	mkfs.ext4 -q -F -L v2node-share -E lazy_itable_init=0,lazy_journal_init=0 -d "$tree" "$1/share.img"
	rm -rf "$tree"
}

main() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, mkfs)"
	install_missing
	local start=$SECONDS
	# The kubelet build (minutes when cold) runs while the image is made.
	local kubelet_log
	work=$(mktemp -d /tmp/criguard-v2node.XXXXXX)
	if [[ -z ${V2NODE_KEEP:-} ]]; then
		trap 'rm -rf "$work"' EXIT
	else
		log "keeping $work"
	fi
	kubelet_log="$work/kubelet-build.log"
	"$here/kubelet.sh" >"$work/kubelet.path" 2>"$kubelet_log" &
	local kubelet_pid=$! image kubelet
	image=$("$here/image.sh")
	if ! wait "$kubelet_pid"; then
		tail -n 30 "$kubelet_log" >&2
		die "kubelet build failed"
	fi
	kubelet=$(cat "$work/kubelet.path")
	log "image $image, kubelet $kubelet ready after $((SECONDS - start)) s"

	assets "$work/assets" "$kubelet"
	local size
	size=$(du -sm "$work/assets" | cut -f1)
	truncate -s "$((size + 64))M" "$work/assets.img"
	mkfs.ext4 -q -F -L v2node-assets -d "$work/assets" "$work/assets.img"
	rm -rf "$work/assets"
	truncate -s 1G "$work/data.img"
	mkfs.ext4 -q -F -L v2node-data "$work/data.img"
	# A disk with one partition (the VM makes its file system): a volume on vdd1 must be
	# throttled on vdd, the disk blk-throttle accepts.
	truncate -s 128M "$work/part.img"
	echo 'start=2048, type=83' | sfdisk -q "$work/part.img" >/dev/null
	# The slow shared disk only where the sharing phase runs (CI's phases do without it).
	local share_drive=()
	if [[ " $RUNTIMES " == *" sh "* ]]; then
		share_disk "$work"
		share_drive=(-drive "file=$work/share.img,if=virtio,format=raw,throttling.bps-total=$SHARE_DISK_BPS")
	fi

	# Drive order fixes the names inside: vda root (254:0), vdb data (254:16), vdc assets,
	# vdd the partitioned disk (254:48), vde the slow shared disk (254:64).
	log "booting (TCG, timeout ${TIMEOUT_SECONDS} s, runtimes: $RUNTIMES)"
	local rc=0 boot=$SECONDS
	# --foreground: qemu stays in our process group, so stopping make stops it too.
	# apparmor=0: the image has no apparmor_parser, without which dockerd refuses to
	# start a container on a kernel with AppArmor on (Debian's).
	timeout --foreground "$TIMEOUT_SECONDS" qemu-system-x86_64 \
		-accel tcg,thread=multi -cpu max -smp 2 -m 2G -net none \
		-nographic -no-reboot -serial mon:stdio \
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 quiet loglevel=3 panic=-1 apparmor=0 systemd.unified_cgroup_hierarchy=1 systemd.unit=criguard-lab.target systemd.show_status=false" \
		-drive "file=$image/root.img,if=virtio,format=raw,snapshot=on" \
		-drive "file=$work/data.img,if=virtio,format=raw" \
		-drive "file=$work/assets.img,if=virtio,format=raw,readonly=on" \
		-drive "file=$work/part.img,if=virtio,format=raw" \
		"${share_drive[@]}" \
		</dev/null >"$work/console.log" 2>&1 || rc=$?
	tr -d '\r' <"$work/console.log" >"$work/console.txt"
	cp "$work/console.txt" "${V2NODE_CONSOLE:-/tmp/criguard-v2node-console.txt}"
	grep -aoE 'V2NODE (PASS|FAIL|INFO) .*' "$work/console.txt" >&2 || true
	if grep -aqE 'V2NODE FAIL ' "$work/console.txt" || ! grep -aq 'V2NODE-RESULT: PASS' "$work/console.txt"; then
		tail -n 150 "$work/console.txt" >&2
		((rc == 124)) && die "no result within ${TIMEOUT_SECONDS} s"
		die "the VM reported failures (qemu exit $rc; console in ${V2NODE_CONSOLE:-/tmp/criguard-v2node-console.txt})"
	fi
	log "PASS: VM $((SECONDS - boot)) s, all $((SECONDS - start)) s"
}

main "$@"
