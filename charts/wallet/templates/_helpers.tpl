{{/* Release-scoped base name, at most 63 - len("-write-peers") characters. */}}
{{- define "wallet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wallet.write.name" -}}{{ include "wallet.fullname" . }}-write{{- end -}}
{{- define "wallet.write.peersService" -}}{{ include "wallet.fullname" . }}-write-peers{{- end -}}
{{- define "wallet.read.name" -}}{{ include "wallet.fullname" . }}-read{{- end -}}

{{- define "wallet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "write"). */}}
{{- define "wallet.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wallet.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" (required "image.repository is required" .Values.image.repository) $tag -}}
{{- end -}}

{{/* Write pod i's stable address: <sts>-<i>.<headless svc>.<ns>.svc.<domain>:<port>. */}}
{{- define "wallet.write.peerAddress" -}}
{{- $ := .ctx -}}
{{- printf "%s-%d.%s.%s.svc.%s:%d" (include "wallet.write.name" $) (int .ordinal) (include "wallet.write.peersService" $) $.Release.Namespace $.Values.clusterDomain (int $.Values.writeNode.port) -}}
{{- end -}}

{{/* The client Service of the write nodes, as host:port. */}}
{{- define "wallet.write.clientEndpoint" -}}
{{- printf "%s.%s.svc.%s:%d" (include "wallet.write.name" .) .Release.Namespace .Values.clusterDomain (int .Values.writeNode.port) -}}
{{- end -}}

{{- define "wallet.read.clientEndpoint" -}}
{{- printf "%s.%s.svc.%s:%d" (include "wallet.read.name" .) .Release.Namespace .Values.clusterDomain (int .Values.readNode.port) -}}
{{- end -}}

{{/* Pod and container security: non-root (the image's distroless "nonroot" user), no
     privilege escalation, read-only root filesystem, no capabilities. */}}
{{- define "wallet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "wallet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The nodes support TLS, peer mTLS and tokens (README "Security: TLS and tokens"), but
     this chart does not mount their certificates and tokens yet (the gRPC probes would also
     need exec probes through walletctl, as Kubernetes' gRPC probes speak no TLS). Until then
     the values stay false and the nodes run with insecure = true. */}}
{{- define "wallet.unimplemented" -}}
{{- if .Values.tls.enabled -}}
{{- fail "tls.enabled: not implemented in this chart yet (the nodes support TLS: see the README, \"Security: TLS and tokens\"); leave it false" -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- fail "auth.enabled: not implemented in this chart yet (the nodes support tokens: see the README, \"Security: TLS and tokens\"); leave it false" -}}
{{- end -}}
{{- end -}}

{{/* The checksum of the rendered configuration, so pods roll when it changes. */}}
{{- define "wallet.configChecksum" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum -}}
{{- end -}}

{{/*
A node's metrics_listen: listenAddress:metrics.port, or "off" when metrics are disabled.
*/}}
{{- define "wallet.metricsListen" -}}
{{- if .metrics.enabled -}}
{{- printf "%s:%d" .config.listenAddress (int .metrics.port) -}}
{{- else -}}
off
{{- end -}}
{{- end }}

{{/*
Prometheus pod annotations (the kubernetes_sd "kubernetes-pods" convention).
*/}}
{{- define "wallet.scrapeAnnotations" -}}
{{- if and .enabled .scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ int .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
