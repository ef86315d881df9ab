# KEDA's own files, for the scaling tests: the external scaler protocol (a test client is built
# from it, so fngate's protos/externalscaler.proto is checked against KEDA's) and the
# ScaledObject CRD (installed into the test API server). Both come from KEDA's Go module as the
# Go module proxy serves it (checked against the checksum database by `go mod download`); the
# module needs a newer Go to build, but its zip is all that is read here.
#   $(KEDA_DIR)/externalscaler.proto
#   $(KEDA_DIR)/keda.sh_scaledobjects.yaml

KEDA_VERSION := v2.21.1
KEDA_MODULE := github.com/kedacore/keda/v2
KEDA_DIR := $(CACHE)/keda-$(KEDA_VERSION)
KEDA_STAMP := $(KEDA_DIR)/.stamp

.PHONY: keda-files
keda-files: $(KEDA_STAMP)

$(KEDA_STAMP):
	@mkdir -p $(KEDA_DIR)
	GOFLAGS= go mod download -json $(KEDA_MODULE)@$(KEDA_VERSION) > $(KEDA_DIR)/download.json || true
	$(PYTHON) $(CURDIR)/make/extract-module-files.py $(KEDA_DIR)/download.json $(KEDA_DIR) \
	  pkg/scalers/externalscaler/externalscaler.proto config/crd/bases/keda.sh_scaledobjects.yaml
	touch $@
