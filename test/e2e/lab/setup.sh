#!/usr/bin/env bash
# Installs and builds everything the e2e and conformance suites run: Debian's runtimes,
# crictl, critest, cri-dockerd, containerd 2 and CRI-O built from their Go modules, and local OCI images (the
# machines have no registry access besides the Go proxy and Debian). Idempotent: each
# step is skipped when its output already exists.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "setup.sh: must run as root (it installs packages)" >&2
	exit 1
fi

repo=$(cd "$(dirname "$0")/../../.." && pwd)
cache="$repo/test/e2e/.cache"
bin="$cache/bin"
# Tools built from a pinned module version do not change with the clone: they are kept
# outside it, keyed by module, version and build tags, so a fresh checkout on the same
# machine (CI right after a session) reuses them instead of building for minutes.
shared=${CRIGUARD_LAB_SHARED:-/var/cache/criguard-lab}
mkdir -p "$bin" "$cache/src" "$cache/images" "$shared/bin"

step() { printf '== lab: %s (%d s)\n' "$*" "$SECONDS"; }

# --- Debian packages -------------------------------------------------------------------
packages=(containerd runc docker.io busybox-static containernetworking-plugins iproute2
	skopeo docker-registry ca-certificates e2fsprogs dmsetup conmon crun libseccomp-dev make gcc libc6-dev
	systemd) # systemd: systemd-socket-activate, systemd-analyze
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	step "apt-get install ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian packages start system daemons; the suites run their own instances and
# never use these, so stop them to keep the machine quiet and the ports free.
for unit in docker.service docker.socket containerd.service docker-registry.service; do
	if systemctl is-active --quiet "$unit" 2>/dev/null; then
		systemctl stop "$unit" || true
		systemctl disable "$unit" >/dev/null 2>&1 || true
	fi
done

# --- Go tools from their modules (LAB.md: `go install …@version` is refused) ------------
# build_module MODULE VERSIONS OUT KIND PKG [TAGS]: download the first of VERSIONS (space
# separated) the Go proxy gives, copy it out of the read-only module cache, drop vendor/
# (it is incomplete in these releases), and build with -mod=mod. KIND is build (static),
# cgo, testbin, or make (C: `make` in the directory PKG, which leaves bin/OUT at the
# module's top, as CRI-O's pinns does).
build_module() {
	local module=$1 versions=$2 out=$3 kind=$4 pkg=$5 tags=${6:-}
	if [[ -x "$bin/$out" ]]; then
		return 0
	fi
	local version dir="" key
	for version in $versions; do
		key="$shared/bin/$out@${module//\//_}@$version@${tags// /,}"
		if [[ -x "$key" ]]; then
			step "reuse $out from $key"
			cp "$key" "$bin/$out.tmp" && mv "$bin/$out.tmp" "$bin/$out"
			return 0
		fi
	done
	for version in $versions; do
		if dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') &&
			[[ -n "$dir" && -d "$dir" ]]; then
			break
		fi
		echo "setup.sh: go mod download $module@$version failed" >&2
		dir=""
	done
	if [[ -z "$dir" ]]; then
		echo "setup.sh: no version of $module among: $versions" >&2
		return 1
	fi
	step "build $out from $module@$version"
	local src="$shared/src/${module//\//_}@$version"
	mkdir -p "$shared/src"
	if [[ ! -d "$src" ]]; then
		rm -rf "$src.tmp"
		cp -r "$dir" "$src.tmp"
		chmod -R u+w "$src.tmp"
		rm -rf "$src.tmp/vendor"
		mv "$src.tmp" "$src"
	fi
	# No symbol table or DWARF (-s -w): nobody debugs these here, and writing them is
	# a good part of linking binaries of 60-130 MB on 2 cores.
	local flags=(-mod=mod -buildvcs=false -trimpath -ldflags "-s -w" -tags "$tags" -o "$bin/$out.tmp")
	case $kind in
	build) (cd "$src" && CGO_ENABLED=0 go build "${flags[@]}" "$pkg") ;;
	cgo) (cd "$src" && CGO_ENABLED=1 go build "${flags[@]}" "$pkg") ;;
	make) make -s -C "$src/$pkg" && cp "$src/bin/$out" "$bin/$out.tmp" ;;
	testbin) (cd "$src" && CGO_ENABLED=0 go test -c "${flags[@]}" "$pkg") ;;
	esac
	key="$shared/bin/$out@${module//\//_}@$version@${tags// /,}"
	cp "$bin/$out.tmp" "$key.tmp" && mv "$key.tmp" "$key"
	mv "$bin/$out.tmp" "$bin/$out"
}

# cri-tools v1.30.0 is what LAB.md measured; v1.37.0 if the proxy ever refuses it.
build_module sigs.k8s.io/cri-tools "v1.30.0 v1.37.0" crictl build ./cmd/crictl
build_module sigs.k8s.io/cri-tools "v1.30.0 v1.37.0" critest testbin ./cmd/critest
build_module github.com/Mirantis/cri-dockerd v0.3.14 cri-dockerd build .
# containerd 2 for what Debian's 1.6 lacks (GetContainerEvents); the same module criguard
# uses as a client library. Its runc shim is found on PATH by lab.WithContainerd2.
build_module github.com/containerd/containerd/v2 v2.4.2 containerd2 build ./cmd/containerd \
	"no_btrfs no_devmapper no_zfs"
build_module github.com/containerd/containerd/v2 v2.4.2 containerd-shim-runc-v2 build \
	./cmd/containerd-shim-runc-v2
# CRI-O has no Debian package (LAB.md). cgo for seccomp (libseccomp-dev); the tags leave
# out what needs C libraries Debian's -dev packages would add (gpgme, ostree, btrfs,
# devicemapper). It runs with Debian's conmon, runc and crun.
build_module github.com/cri-o/cri-o v1.34.0 crio cgo ./cmd/crio \
	"containers_image_ostree_stub containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp"
build_module github.com/cri-o/cri-o v1.34.0 pinns make pinns

# --- local images ------------------------------------------------------------------------
# OCI layout tars for containerd and skopeo, a plain rootfs tar for `docker import`.
tool_src="$repo/test/e2e/tools/ociimage/main.go"
if [[ ! -x "$bin/ociimage" || "$tool_src" -nt "$bin/ociimage" ]]; then
	step "build ociimage"
	(cd "$repo" && CGO_ENABLED=0 go build -o "$bin/ociimage" ./test/e2e/tools/ociimage)
	rm -f "$cache/images/"*.tar
fi
img="$cache/images"
if [[ ! -s "$img/busybox.oci.tar" ]]; then
	step "build images busybox, pause"
	"$bin/ociimage" -name criguard.test/e2e/busybox:latest -out "$img/busybox.oci.tar" \
		-rootfs-out "$img/rootfs.tar"
	# PID 1 ignores SIGTERM unless it traps it: without the trap every sandbox stop
	# waits out the runtime's grace period.
	"$bin/ociimage" -name criguard.test/e2e/pause:latest -out "$img/pause.oci.tar" \
		-entrypoint '["/bin/sh","-c","trap \"exit 0\" TERM; sleep 2147483647 & wait"]'
fi

step "ready: $(ls "$bin" | tr '\n' ' ')"
