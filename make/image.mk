# The container image, built and run by a real engine:
#   make image        builds the Dockerfile (Docker where its engine runs, else podman;
#                     make/image.sh), on the official Node image, or on a stand-in base made
#                     once where that registry cannot be reached (make/image-base.sh)
#   make image-test   runs the built image as the chart runs it (test/image/image.test.ts);
#                     part of `make test`
#   make image-tools  podman, runc and debootstrap from Debian's packages (as root), when
#                     neither Docker nor podman is here; and podman's settings for this host
# podman reads $(CONTAINERS_CONF): no ulimits of its own (its default file limit is above
# this kind of host's hard limit) and runc (crun refuses hybrid cgroups).

IMAGE ?= fngate:$(shell node -p 'require("./package.json").version')
IMAGE_DIR := $(CACHE)/image
NODE_VERSION = $(shell node -p 'require("./node_modules/node/package.json").version' 2>/dev/null)
NODE_IMAGE ?= node:$(firstword $(subst ., ,$(NODE_VERSION)))-bookworm-slim
STANDIN_BASE = localhost/fngate-node-base:$(NODE_VERSION)
export CONTAINERS_CONF := $(IMAGE_DIR)/containers.conf
IMAGE_TOOLS_STAMP := $(IMAGE_DIR)/.tools-stamp

.PHONY: image image-test image-tools
image-tools: $(IMAGE_TOOLS_STAMP)

$(IMAGE_TOOLS_STAMP): $(lastword $(MAKEFILE_LIST))
	@mkdir -p $(IMAGE_DIR)
	@if ! (command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1) && \
	   ! (command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1); then \
	  echo "image-tools: installing podman, runc and debootstrap (Debian packages)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >$(IMAGE_DIR)/apt.log 2>&1 || \
	    { tail -20 $(IMAGE_DIR)/apt.log >&2; echo "image-tools: apt-get failed (needs root)" >&2; exit 1; }; fi
	printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > $(CONTAINERS_CONF)
	touch $@

image: deps image-tools
	sh make/image.sh $(IMAGE) $(NODE_IMAGE) $(STANDIN_BASE) $(IMAGE_DIR)

image-test: image build
	FNGATE_IMAGE=$(IMAGE) tap test/image/image.test.ts
