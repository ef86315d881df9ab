# fngate: `make run` starts the embedded default (fngate local); `make test` runs everything.
# Every tool the tests need is installed here, into .cache/ (kept between runs).

SHELL := /bin/bash
CACHE := $(CURDIR)/.cache
# node_modules/.bin first: the `node@24` devDependency brings Node 24 on older machines.
export PATH := $(CURDIR)/node_modules/.bin:$(CACHE)/bin:$(CACHE)/venv/bin:$(PATH)
export GOPATH := $(CACHE)/go
export GOCACHE := $(CACHE)/go-build
export GOMODCACHE := $(CACHE)/go/pkg/mod
export GOBIN := $(CACHE)/bin
export GOFLAGS := -mod=mod

.PHONY: all deps build typecheck test run tools clean

all: build

deps: node_modules/.deps-stamp
node_modules/.deps-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

build: deps
	npm run build

typecheck: deps
	tsc -p tsconfig.test.json

run: build
	node dist/cmd/fngate.js local

test: build typecheck tools
	npm test

clean:
	rm -rf dist .tap

include make/tools.mk
