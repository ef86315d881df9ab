# Files of other projects the tests install or build from, taken from their Go modules as the Go
# module proxy serves them (checked against the checksum database by `go mod download`); only
# the module zip is read, so a module that needs a newer Go to build is fine.
#   $(KEDA_DIR)/externalscaler.proto         KEDA's external scaler protocol: a test client is
#                                             built from it, checking protos/externalscaler.proto
#   $(KEDA_DIR)/keda.sh_scaledobjects.yaml   KEDA's ScaledObject CRD, for the test API server
#   $(GATEWAY_API_DIR)/*.yaml                 the Gateway API's standard-channel CRDs (Gateway,
#                                             TLSRoute, TCPRoute), for the chart's routes

KEDA_VERSION := v2.21.1
KEDA_DIR := $(CACHE)/keda-$(KEDA_VERSION)
GATEWAY_API_VERSION := v1.6.3
GATEWAY_API_DIR := $(CACHE)/gateway-api-$(GATEWAY_API_VERSION)
GATEWAY_API_CRDS := $(addprefix config/crd/standard/gateway.networking.k8s.io_,gatewayclasses.yaml gateways.yaml tlsroutes.yaml tcproutes.yaml)

.PHONY: upstream-files keda-files gateway-api-files
upstream-files: keda-files gateway-api-files
keda-files: $(KEDA_DIR)/.stamp
gateway-api-files: $(GATEWAY_API_DIR)/.stamp

# module@version, output dir, files in the module
define module_files
	@mkdir -p $(2)
	GOFLAGS= go mod download -json $(1) > $(2)/download.json || true
	$(PYTHON) $(CURDIR)/make/extract-module-files.py $(2)/download.json $(2) $(3)
	touch $(2)/.stamp
endef

$(KEDA_DIR)/.stamp:
	$(call module_files,github.com/kedacore/keda/v2@$(KEDA_VERSION),$(KEDA_DIR),pkg/scalers/externalscaler/externalscaler.proto config/crd/bases/keda.sh_scaledobjects.yaml)

$(GATEWAY_API_DIR)/.stamp:
	$(call module_files,sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION),$(GATEWAY_API_DIR),$(GATEWAY_API_CRDS))
