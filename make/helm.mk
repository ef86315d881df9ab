# helm, for the chart in deploy/helm/fngate (test/helm/*.test.ts), installed into $(CACHE)
# like make/tools.mk:
#   $(GOBIN)/helm   helm $(HELM_VERSION), built with `go install` (GOBIN = $(CACHE)/bin)
# Guarded by a stamp naming the version, so a second `make helm-tools` does nothing; the
# stamp is redone when HELM_VERSION changes or the binary is gone. GOPATH/GOCACHE/
# GOMODCACHE/GOBIN come from the Makefile (all in $(CACHE)).
#
# HELM_VERSION: the current stable helm release (v4). To move: `go list -m -versions
# helm.sh/helm/v4`, paste the newest here. Needs Go >= its go.mod's `go` line
# (GOTOOLCHAIN=local: no toolchain download). -X sets the version `helm version` reports
# (a `go install` build would otherwise leave it empty).

HELM_VERSION := v4.3.1
HELM := $(GOBIN)/helm
HELM_STAMP := $(CACHE)/stamps/helm-$(HELM_VERSION)

# Nice and one package at a time by default: the build only uses spare CPU (timing-sensitive
# tests may share the machine). On an idle machine: make helm-tools HELM_BUILD_NICE= HELM_BUILD_P=4
HELM_BUILD_NICE ?= nice -n 19
HELM_BUILD_P ?= $(if $(CI),2,1)

.PHONY: helm-tools _tools_force
helm-tools: $(HELM_STAMP)

$(HELM_STAMP): $(if $(realpath $(HELM)),,_tools_force)
	CGO_ENABLED=0 GOTOOLCHAIN=local $(HELM_BUILD_NICE) go install -p $(HELM_BUILD_P) -trimpath \
	  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
	  helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@mkdir -p $(@D) && rm -f $(@D)/helm-* && touch $@
