{{/* Names, labels and the checks values.schema.json cannot express. */}}

{{- define "fngate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-fngate, or just <release> when it already contains the chart name. */}}
{{- define "fngate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fngate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fngate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fngate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fngate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fngate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fngate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fngate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fngate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "fngate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "fngate.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The Secret with the session-sealing key: the operator's, or the one the chart makes. */}}
{{- define "fngate.sessionKeySecretName" -}}
{{- default (printf "%s-session-key" (include "fngate.fullname" .)) .Values.sessions.key.existingSecret }}
{{- end }}

{{/* Where the gateway reads it (--session-key-file); the volume maps the data key to "key". */}}
{{- define "fngate.sessionKeyFile" -}}
/etc/fngate/session-key/key
{{- end }}

{{/* Host part of a listen address: IPv6 needs brackets. */}}
{{- define "fngate.listenAddr" -}}
{{- $host := .host }}
{{- if contains ":" $host }}{{ printf "[%s]:%d" $host (int .port) }}{{ else }}{{ printf "%s:%d" $host (int .port) }}{{ end }}
{{- end }}

{{- define "fngate.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- add $s.preStopSleepSeconds $s.drainTimeoutSeconds $s.extraGracePeriodSeconds }}
{{- end }}

{{/*
Rules that span several values (values.schema.json checks each value alone). Every
message names the values at fault and what to do.
*/}}
{{- define "fngate.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.tls.enabled) (not $v.service.plaintext.enabled) }}
{{- fail "tls.enabled=false and service.plaintext.enabled=false: the Service would have no port; enable TLS (recommended) or the plaintext port" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.enabled) }}
{{- fail "tls.certManager.enabled=true needs tls.enabled=true" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.dnsNames) (not $v.domain) }}
{{- fail "tls.certManager.enabled=true needs the certificate's names: set domain (for grpc.<domain>) or tls.certManager.dnsNames" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $v.autoscaling.enabled (not $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled=true needs a target: autoscaling.targetCPUUtilizationPercentage and/or autoscaling.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and $v.autoscaling.enabled $v.autoscaling.targetCPUUtilizationPercentage (not (dig "requests" "cpu" "" $v.resources)) }}
{{- fail "autoscaling.targetCPUUtilizationPercentage needs resources.requests.cpu (utilization is a share of the request)" }}
{{- end }}
{{- if and $v.autoscaling.enabled $v.autoscaling.targetMemoryUtilizationPercentage (not (dig "requests" "memory" "" $v.resources)) }}
{{- fail "autoscaling.targetMemoryUtilizationPercentage needs resources.requests.memory (utilization is a share of the request)" }}
{{- end }}
{{- if $v.gatewayApi.enabled }}
{{- if not $v.gatewayApi.parentRefs }}
{{- fail "gatewayApi.enabled=true needs gatewayApi.parentRefs: the Gateway (name, namespace) and its listener (sectionName) the route attaches to" }}
{{- end }}
{{- if and (eq $v.gatewayApi.kind "TLSRoute") (not $v.tls.enabled) }}
{{- fail "gatewayApi.kind=TLSRoute passes TLS through to the gateway's own TLS listener: it needs tls.enabled=true (or use kind TCPRoute)" }}
{{- end }}
{{- if and (eq $v.gatewayApi.kind "TLSRoute") (not $v.gatewayApi.hostnames) (not $v.domain) }}
{{- fail "gatewayApi.kind=TLSRoute needs the SNI names it routes: set domain (for grpc.<domain>) or gatewayApi.hostnames" }}
{{- end }}
{{- end }}
{{- $p := $v.ports }}
{{- if or (eq (int $p.h2c) (int $p.tls)) (eq (int $p.h2c) (int $p.admin)) (eq (int $p.tls) (int $p.admin)) }}
{{- fail (printf "ports.h2c (%d), ports.tls (%d) and ports.admin (%d) must differ" (int $p.h2c) (int $p.tls) (int $p.admin)) }}
{{- end }}
{{- if and $v.service.plaintext.enabled $v.tls.enabled (eq (int $v.service.port) (int $v.service.plaintext.port)) }}
{{- fail (printf "service.port and service.plaintext.port are both %d; give the plaintext port another number" (int $v.service.port)) }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}
