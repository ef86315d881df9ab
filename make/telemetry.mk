# Tools of the telemetry tests (test/telemetry/), installed into $(CACHE) like make/tools.mk:
#   - promtool (PROMETHEUS_VERSION), Prometheus' own exposition parser and linter:
#     `promtool check metrics` validates what admin /metrics serves.
# `go install .../cmd/promtool@v...` is refused for this module (its go.mod has replace
# directives), so the module is downloaded and promtool built inside it, at low priority: a
# cold build compiles Prometheus' service-discovery dependencies (several minutes).
# Go module v0.315.0 is Prometheus v3.15.0.

PROMETHEUS_VERSION := v0.315.0
PROMTOOL_STAMP := $(CACHE)/stamps/promtool-$(PROMETHEUS_VERSION)
PROMETHEUS_MODULE_DIR := $(GOMODCACHE)/github.com/prometheus/prometheus@$(PROMETHEUS_VERSION)

.PHONY: telemetry-tools
telemetry-tools: $(PROMTOOL_STAMP)

$(PROMTOOL_STAMP): $(if $(realpath $(GOBIN)/promtool),,_tools_force)
	go mod download github.com/prometheus/prometheus@$(PROMETHEUS_VERSION)
	cd $(PROMETHEUS_MODULE_DIR) && GOFLAGS= GOWORK=off CGO_ENABLED=0 nice -n 19 \
	  go build -trimpath -o $(GOBIN)/promtool ./cmd/promtool
	$(GOBIN)/promtool --version
	@mkdir -p $(@D) && rm -f $(@D)/promtool-* && touch $@
