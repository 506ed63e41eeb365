# criguard — see README.md. `make help` lists the targets.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/criguard
LAB       := test/e2e/.cache

.PHONY: help build test lint tidy fuzz e2e lab conformance test-v2 e2e-v2 bench demo clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/criguard
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/criguard

test: ## unit tests with the race detector (no root, no runtime)
	$(GO) test -race -count=1 ./...

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags e2e ./test/...

tidy: ## go mod tidy must leave no diff
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

fuzz: ## run every fuzz target briefly
	@set -e; \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s $$pkg || exit 1; done; done

lab: ## install the real runtimes and tools the e2e suite uses (root)
	test/e2e/lab/setup.sh

e2e: build lab ## end-to-end suite on real containerd, runc, dockerd, cri-dockerd, crictl (root)
	CRIGUARD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -v -timeout 40m ./test/e2e/...

conformance: build lab ## critest directly and through criguard; fails on any regression (root)
	test/conformance/run.sh

test-v2: ## cgroup v2 root tests inside a qemu VM (root)
	test/v2vm/run.sh

e2e-v2: build lab ## kubelet, criguard, containerd 2.x and 1.6 on a cgroup v2 + systemd node in a qemu VM (root)
	test/v2node/run.sh

bench: build lab ## benchmarks on the real runtime; figures go to docs/BENCHMARKS.md (root)
	test/bench/run.sh

demo: build lab ## a throttled and an unthrottled pod side by side (root)
	test/e2e/demo.sh

clean: ## remove build output
	rm -rf bin
