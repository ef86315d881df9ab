# fngate: `make run` starts the embedded default (fngate local); `make test` runs everything.
# Every tool the tests need is installed by this Makefile into $(FNGATE_CACHE), outside the
# work tree so that a fresh clone (CI) reuses what an earlier run built; `.cache` in the tree
# is a link to it, for the tests. `rm -rf ~/.cache/fngate` starts over.

SHELL := /bin/bash
FNGATE_CACHE ?= $(HOME)/.cache/fngate
CACHE := $(abspath $(FNGATE_CACHE))
export FNGATE_CACHE := $(CACHE)
# node_modules/.bin first: the `node@24` devDependency brings Node 24 on older machines.
export PATH := $(CURDIR)/node_modules/.bin:$(CACHE)/bin:$(CACHE)/venv/bin:$(PATH)
export GOPATH := $(CACHE)/go
export GOCACHE := $(CACHE)/go-build
export GOMODCACHE := $(CACHE)/go/pkg/mod
export GOBIN := $(CACHE)/bin
export GOFLAGS := -mod=mod

.PHONY: test-fast all deps build typecheck test run tools clean

all: build

# TypeScript 7 (the native compiler) builds and typechecks: ~7x faster than 5.9 here. The
# `typescript` package stays 5.9, because tap builds its plugins with TypeScript's JS API,
# which TypeScript 7 does not have.
TSC := node node_modules/typescript7/bin/tsc

deps: node_modules/.deps-stamp
node_modules/.deps-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

build: deps
	npm run build

# Tests and the benchmark harness too: both import lib/, and a change there must not break them.
typecheck: deps
	$(TSC) -p tsconfig.test.json
	$(TSC) -p bench/tsconfig.json

run: build
	node dist/cmd/fngate.js local

# The fast tier: the typecheck and every test file that needs no Go tool, Python, API server,
# helm or container engine (one that names such a helper or tool is left for `make test`).
# `make test` runs it first, before it builds any of those tools, then only the others.
# Four files at a time: most wait on timers and sockets (about 55 s on 2 cores); at eight,
# the timing-sensitive ones start to fail there.
NEEDS_TOOLS := helpers/(python|h2spec|kube|kube-fixtures|helm|hpack-peer|keda)\.ts|\.cache/|grpcurl|promtool|FNGATE_IMAGE|interop|runPython|PYTHON
ALL_TESTS = $(shell find test -name '*.test.ts' | sort)
FAST_TESTS = $(shell grep -L -E '$(NEEDS_TOOLS)' $(ALL_TESTS))
SLOW_TESTS = $(filter-out $(FAST_TESTS),$(ALL_TESTS))

test-fast: build typecheck
	tap --jobs 4 $(FAST_TESTS)

test: test-fast $(CURDIR)/.cache tools kube-tools conformance-tools helm-tools telemetry-tools upstream-files image
	FNGATE_IMAGE=$(IMAGE) tap $(SLOW_TESTS)

clean:
	rm -rf dist .tap

# The in-tree link to the cache (a real .cache directory, if someone made one, is left alone).
$(CURDIR)/.cache:
	mkdir -p $(CACHE)
	ln -sfn $(CACHE) $@

include make/tools.mk
include make/kube.mk
include make/conformance.mk
include make/bench.mk
include make/helm.mk
include make/telemetry.mk
include make/fuzz.mk
include make/upstream-files.mk
include make/image.mk
