# A real Kubernetes API server for the Kubernetes tests, and kubectl, both built from
# test/kube/apiserver: its own go.mod pins k8s.io/kubernetes $(KUBE_VERSION), the staging
# modules at the matching v0.x.y, and the etcd server that release pins.
#   $(CACHE)/bin/fngate-kube-apiserver   etcd (embedded) + kube-apiserver in one process
#   $(CACHE)/bin/kubectl                 kubectl from the same module set
# Guarded by a stamp (like make/tools.mk): redone when go.mod, go.sum, a main.go or this
# file changes, or a binary is gone; a second `make kube-tools` does nothing. Build
# outputs are cached in GOCACHE/GOMODCACHE under $(CACHE), so a rebuild after an edit
# only recompiles what changed. A COLD build compiles a few thousand packages: tens of
# minutes on 2 cores at -p 1 (see KUBE_BUILD_P).
#
# Needs Go >= the `go` line of test/kube/apiserver/go.mod (GOTOOLCHAIN=local: no download).
# To move to another release: edit KUBE_VERSION here and the versions in go.mod (see its
# header), then `cd test/kube/apiserver && go mod tidy`.

KUBE_VERSION := v1.37.1
KUBE_SRC := $(CURDIR)/test/kube/apiserver
KUBE_APISERVER := $(CACHE)/bin/fngate-kube-apiserver
KUBECTL := $(CACHE)/bin/kubectl
KUBE_INPUTS := $(KUBE_SRC)/go.mod $(KUBE_SRC)/go.sum $(KUBE_SRC)/main.go $(KUBE_SRC)/kubectl/main.go \
  $(lastword $(MAKEFILE_LIST))
KUBE_STAMP := $(CACHE)/stamps/kube-tools

# Nice and one package at a time by default, so the build only uses spare CPU (timing-
# sensitive tests may share the machine). For a fast build on an idle machine:
#   make kube-tools KUBE_BUILD_NICE= KUBE_BUILD_P=4
KUBE_BUILD_NICE ?= nice -n 19
KUBE_BUILD_P ?= $(if $(CI),2,1)

# Version stamping as hack/lib/version.sh does, so `kubectl version` and /version report
# the release instead of v0.0.0-master. -s -w: no symbol table / DWARF (stack traces keep
# function names and lines).
KUBE_VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
KUBE_LDFLAGS := -s -w $(foreach p,$(KUBE_VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) \
  -X $(p).gitMajor=$(patsubst v%,%,$(word 1,$(subst ., ,$(KUBE_VERSION)))) \
  -X $(p).gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION))) -X $(p).gitTreeState=clean)
# -mod=readonly: the committed go.sum must be complete (the top-level GOFLAGS is -mod=mod).
KUBE_GO_BUILD := cd $(KUBE_SRC) && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  $(KUBE_BUILD_NICE) go build -p $(KUBE_BUILD_P) -trimpath -ldflags '$(KUBE_LDFLAGS)'

.PHONY: kube-tools _kube_force
kube-tools: $(KUBE_STAMP)

$(KUBE_STAMP): $(KUBE_INPUTS) $(if $(and $(realpath $(KUBE_APISERVER)),$(realpath $(KUBECTL))),,_kube_force)
	@echo "building fngate-kube-apiserver and kubectl ($(KUBE_VERSION)); a cold build takes a long time"
	$(KUBE_GO_BUILD) -o $(KUBE_APISERVER) .
	$(KUBE_GO_BUILD) -o $(KUBECTL) ./kubectl
	@mkdir -p $(@D) && touch $@
