#!/usr/bin/env bash
# Builds kubelet from k8s.io/kubernetes (LAB.md: the module zip lacks staging/, so the
# module is copied out, vendor/ and go.work dropped, the ./staging replaces removed and
# each k8s.io/* v0.0.0 requirement pinned to the published v0.<minor>.<patch>).
# The binary is kept at $CACHE/bin/kubelet@VERSION and reused; prints its path.
set -euo pipefail

readonly VERSION=${KUBELET_VERSION:-v1.37.2}
readonly CACHE=${CRIGUARD_LAB_SHARED:-/var/cache/criguard-lab}
out="$CACHE/bin/kubelet@$VERSION"

log() { echo "kubelet.sh: $*" >&2; }

if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi
mkdir -p "$CACHE/bin" "$CACHE/src"
log "downloading k8s.io/kubernetes@$VERSION"
dir=$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n "$dir" && -d "$dir" ]] || { log "go mod download k8s.io/kubernetes@$VERSION failed"; exit 1; }
src="$CACHE/src/k8s.io_kubernetes@$VERSION"
if [[ ! -d "$src" ]]; then
	rm -rf "$src.tmp"
	cp -r "$dir" "$src.tmp"
	chmod -R u+w "$src.tmp"
	rm -rf "$src.tmp/vendor" "$src.tmp"/go.work*
	staging="v0.${VERSION#v1.}"
	# Drop "k8s.io/x => ./staging/src/k8s.io/x" (single-line and inside replace blocks),
	# then pin the k8s.io/x v0.0.0 requirements those replaces served.
	sed -i -E '/=>[[:space:]]*\.\/staging\//d; s#^([[:space:]]*k8s\.io/[^[:space:]]+)[[:space:]]+v0\.0\.0([[:space:]]|$)#\1 '"$staging"'\2#' "$src.tmp/go.mod"
	mv "$src.tmp" "$src"
fi
log "building kubelet $VERSION (about 5 min on 2 cores)"
(cd "$src" && CGO_ENABLED=0 go build -mod=mod -buildvcs=false -trimpath -ldflags "-s -w" -o "$out.tmp" ./cmd/kubelet)
mv "$out.tmp" "$out"
echo "$out"
