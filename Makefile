# criguard — see README.md. `make help` lists the targets.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/criguard
LAB       := test/e2e/.cache

# Packaging: tools run from the Go module proxy at pinned versions, no binary download.
MD2MAN    := github.com/cpuguy83/go-md2man/v2@v2.0.7
NFPM      := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
PKG_OUT   := _out/package
PKG_STAGE := _out/package/stage
# packaging/nfpm.yaml names _out/package/stage itself: nfpm expands no variables in paths.
# A tag vX.Y.Z gives X.Y.Z (X.Y.Z+gitN.gSHA after it); no tag gives
# 0.0.0+git<commit time>.<sha>, which still sorts newer commits higher.
PKG_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+git\1.g/' | grep . || \
	echo "0.0.0+git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo dev)")
PKG_ARCH  ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= criguard maintainers <maintainers@criguard.dev>
# make e2e-v2 builds the .deb alone (twice: the upgrade test's two versions).
PKG_FORMATS ?= deb rpm
# build, package, vet, staticcheck and the suites' test binaries all compile static
# (no cgo) with -trimpath, so that one compile of the dependencies serves them all;
# only make test (-race needs cgo) compiles them again. Cold, that is minutes.
# grpcnotrace leaves out gRPC's x/net/trace, whose html/template makes the linker keep
# every exported method of every type: 5 MB more binary, all of it resident in the
# daemon (docs/BENCHMARKS.md §18). test/e2e and test/conformance build with it too.
GO_TAGS   := grpcnotrace
# Every build tag in the tree (none is negated): one pass of vet and staticcheck sees every file.
ALL_TAGS  := e2e,conformance,bench,demo,$(GO_TAGS)
STATIC    := CGO_ENABLED=0 GOFLAGS="$(strip -trimpath -tags=$(GO_TAGS) $(GOFLAGS))"

.PHONY: help build man package test lint tidy fuzz e2e e2e-full e2e-nri lab conformance test-v2 e2e-v2 e2e-v2-full e2e-v2-share bench demo clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/criguard
	$(STATIC) $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/criguard

man: ## render docs/criguard.8.md to _out/man/criguard.8
	@mkdir -p _out/man
	$(GO) run $(MD2MAN) -in docs/criguard.8.md -out _out/man/criguard.8

package: man ## .deb and .rpm of criguard in _out/package (nfpm; packaging/)
	rm -rf $(PKG_OUT) && mkdir -p $(PKG_STAGE)
	$(STATIC) GOARCH=$(PKG_ARCH) $(GO) build -ldflags "$(LDFLAGS) -s -w" -o $(PKG_STAGE)/criguard ./cmd/criguard
	sed -e 's|/usr/local/bin/criguard|/usr/bin/criguard|' -e 's|^# /etc/systemd/system/criguard.service|# criguard.service (packaged)|' \
		-e 's|^Documentation=|Documentation=man:criguard(8) |' \
		examples/systemd/criguard.service >$(PKG_STAGE)/criguard.service
	gzip -9n <_out/man/criguard.8 >$(PKG_STAGE)/criguard.8.gz
	printf 'criguard (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
		'$(PKG_VERSION)' "$$(git rev-parse HEAD 2>/dev/null || echo unknown)" '$(PKG_MAINTAINER)' \
		"$$(date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))" | gzip -9n >$(PKG_STAGE)/changelog.gz
	for p in $(PKG_FORMATS); do \
		PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' PKG_MAINTAINER='$(PKG_MAINTAINER)' \
		$(GO) run $(NFPM) package --config packaging/nfpm.yaml --packager $$p --target $(PKG_OUT)/ || exit 1; done
	@ls -l $(PKG_OUT)/*.*

test: ## unit tests with the race detector (no root, no runtime)
	$(GO) test -race -count=1 -tags $(GO_TAGS) ./...

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(STATIC) $(GO) vet -tags $(ALL_TAGS) ./...
	$(STATIC) $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags $(ALL_TAGS) ./...

tidy: ## go mod tidy must leave no diff
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

fuzz: ## run every fuzz target briefly
	@set -e; \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s $$pkg || exit 1; done; done

lab: ## install the real runtimes and tools the e2e suite uses (root)
	test/e2e/lab/setup.sh

e2e: build lab ## end-to-end suite on real containerd, CRI-O, runc, crun, dockerd, cri-dockerd, crictl, the NRI plugin included, in two halves side by side (root; E2E_RUN=regexp runs part)
	CRIGUARD_BIN=$(CURDIR)/$(BIN) test/e2e/run.sh

e2e-full: build lab ## make e2e plus the restart comparisons it leaves out (plain bind, SIGKILL), which report figures only (root)
	E2E_FULL=1 CRIGUARD_BIN=$(CURDIR)/$(BIN) test/e2e/run.sh

e2e-nri: build lab ## only criguard as an NRI plugin on containerd 2.4 and CRI-O 1.34 (root; part of make e2e)
	E2E_RUN='^TestNRI$$' CRIGUARD_BIN=$(CURDIR)/$(BIN) test/e2e/run.sh

conformance: build lab ## critest directly and through criguard; fails on any regression (root)
	test/conformance/run.sh

test-v2: ## cgroup v2 root tests inside a qemu VM (root)
	test/v2vm/run.sh

e2e-v2: build lab ## kubelet and criguard in front of containerd 2.x, dockerd + cri-dockerd, CRI-O + crun, and as containerd's NRI plugin, on a cgroup v2 + systemd node in a qemu VM (root)
	test/v2node/run.sh

e2e-v2-full: build lab ## make e2e-v2 plus five restarts of criguard under load on containerd 2 (root)
	V2NODE_FULL=1 test/v2node/run.sh

e2e-v2-share: build lab ## issue 22's weights and protection on the v2 node (a disk slowed by qemu, BFQ): the phase sh, not in CI (root)
	V2NODE_RUNTIMES=sh test/v2node/run.sh

bench: build lab ## benchmarks on the real runtime; figures go to docs/BENCHMARKS.md (root)
	test/bench/run.sh

demo: build lab ## a throttled and an unthrottled pod side by side (root)
	test/e2e/demo.sh

clean: ## remove build output
	rm -rf bin _out
