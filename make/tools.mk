# Test tools, installed into $(CACHE) (kept between runs; `rm -rf .cache` starts over):
#   - a Python venv with grpcio / grpcio-tools / protobuf (test/python/requirements.txt)
#   - grpcurl (GRPCURL_VERSION), built with `go install` into $(CACHE)/bin
# Each is guarded by a stamp file, so a second `make tools` does nothing. A stamp is
# redone when its input changes (requirements.txt, GRPCURL_VERSION) or its tool is gone.

PYTHON ?= python3
GRPCURL_VERSION := v1.9.4

VENV := $(CACHE)/venv
VENV_STAMP := $(VENV)/.requirements-stamp
PY_REQUIREMENTS := $(CURDIR)/test/python/requirements.txt
GRPCURL_STAMP := $(CACHE)/stamps/grpcurl-$(GRPCURL_VERSION)

.PHONY: tools _tools_force
tools: $(VENV_STAMP) $(GRPCURL_STAMP)

# Created by the host Python ($(VENV)/bin is on PATH, so remove a broken venv first);
# then pip installs the pinned requirements into it.
$(VENV_STAMP): $(PY_REQUIREMENTS) $(if $(realpath $(VENV)/bin/python),,_tools_force)
	@if ! $(VENV)/bin/python -c '' 2>/dev/null; then \
	  rm -rf $(VENV) && echo "creating $(VENV)" && $(PYTHON) -m venv $(VENV); fi
	PIP_CACHE_DIR=$(CACHE)/pip $(VENV)/bin/python -m pip install --quiet --no-input \
	  --disable-pip-version-check -r $(PY_REQUIREMENTS)
	$(VENV)/bin/python -c 'import grpc, grpc_tools, google.protobuf'
	touch $@

$(GRPCURL_STAMP): $(if $(realpath $(GOBIN)/grpcurl),,_tools_force)
	CGO_ENABLED=0 go install -ldflags "-X main.version=$(GRPCURL_VERSION)" \
	  github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@mkdir -p $(@D) && rm -f $(@D)/grpcurl-* && touch $@
