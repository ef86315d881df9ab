# Conformance tools, installed into $(CACHE) like make/tools.mk:
#   $(INTEROP_DIR)/client, $(INTEROP_DIR)/server   grpc-go's interop client and server
#                                                 (test/conformance/interop.test.ts)
#   $(GOBIN)/h2spec                               HTTP/2 conformance (test/conformance/h2spec.test.ts)
# The interop binaries get their own directory, off PATH: `go install` names them `client`
# and `server`. Each is guarded by a stamp naming its version, so a second
# `make conformance-tools` does nothing; a stamp is redone when its version changes or a
# binary is gone. GOPATH/GOCACHE/GOMODCACHE/GOBIN come from the Makefile (all in $(CACHE)).
#
# Versions:
#   GRPC_GO_VERSION  a grpc-go release (the interop packages live in the main module).
#   H2SPEC_VERSION   h2spec's master (`go install .../cmd/h2spec@master`), pinned to the
#                    pseudo-version of its head commit 70ac229 (2020-08-04). The last tag,
#                    v2.2.1, predates go.mod and master's fixes. To move: resolve @master
#                    (`go list -m github.com/summerwind/h2spec@master`) and paste it here.
# Needs Go >= grpc-go's `go` line (GOTOOLCHAIN=local: no toolchain download).

GRPC_GO_VERSION := v1.85.0
H2SPEC_VERSION := v0.0.0-20200804131034-70ac22940108

INTEROP_DIR := $(CACHE)/grpc-interop
INTEROP_STAMP := $(CACHE)/stamps/grpc-interop-$(GRPC_GO_VERSION)
H2SPEC_STAMP := $(CACHE)/stamps/h2spec-$(H2SPEC_VERSION)

# Nice by default, so the build only uses spare CPU (timing-sensitive tests may share the
# machine). On an idle machine: make conformance-tools CONFORMANCE_BUILD_NICE=
CONFORMANCE_BUILD_NICE ?= nice -n 19
CONFORMANCE_GO_INSTALL := CGO_ENABLED=0 GOTOOLCHAIN=local $(CONFORMANCE_BUILD_NICE) go install -trimpath

.PHONY: conformance-tools _tools_force
conformance-tools: $(INTEROP_STAMP) $(H2SPEC_STAMP)

$(INTEROP_STAMP): $(if $(and $(realpath $(INTEROP_DIR)/client),$(realpath $(INTEROP_DIR)/server)),,_tools_force)
	GOBIN=$(INTEROP_DIR) $(CONFORMANCE_GO_INSTALL) \
	  google.golang.org/grpc/interop/client@$(GRPC_GO_VERSION) \
	  google.golang.org/grpc/interop/server@$(GRPC_GO_VERSION)
	@mkdir -p $(@D) && rm -f $(@D)/grpc-interop-* && touch $@

$(H2SPEC_STAMP): $(if $(realpath $(GOBIN)/h2spec),,_tools_force)
	$(CONFORMANCE_GO_INSTALL) -ldflags "-X main.VERSION=$(H2SPEC_VERSION) -X main.COMMIT=$(lastword $(subst -, ,$(H2SPEC_VERSION)))" \
	  github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)
	@mkdir -p $(@D) && rm -f $(@D)/h2spec-* && touch $@
