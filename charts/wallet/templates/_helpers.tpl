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
{{- /* The headless Service of the read StatefulSet (readNode.persistence.enabled). */ -}}
{{- define "wallet.read.podsService" -}}{{ include "wallet.fullname" . }}-read-pods{{- end -}}

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

{{/* Where the Secrets are mounted (read-only, only the keys a pod needs). Beside /etc/wallet,
     not inside it: a mount point inside the read-only ConfigMap volume could not be created. */}}
{{- define "wallet.tls.dir" -}}/etc/wallet-tls{{- end -}}
{{- define "wallet.auth.dir" -}}/etc/wallet-auth{{- end -}}

{{/* "true" when the nodes may listen on all interfaces without `insecure`: TLS and tokens. */}}
{{- define "wallet.secured" -}}
{{- if and .Values.tls.enabled .Values.auth.enabled -}}true{{- end -}}
{{- end -}}

{{/* The nodes' `insecure` line: false with TLS and tokens both on. Without them a node
     listens on all interfaces only with `insecure = true`, which the chart renders only when
     something else protects it: the NetworkPolicies (networkPolicy.enabled, the default), or
     the operator's explicit `insecure: true`. Neither: the render fails, naming the ways out. */}}
{{- define "wallet.insecureSetting" -}}
{{- if include "wallet.secured" . -}}
# TLS and tokens are on: the node may listen on all interfaces.
insecure = false
{{- else if .Values.networkPolicy.enabled -}}
# No TLS and tokens (tls.enabled and auth.enabled): the NetworkPolicies of this release
# (networkPolicy.enabled) are what protects the node; it refuses all interfaces otherwise.
insecure = true
{{- else if .Values.insecure -}}
# insecure: true (explicit): no TLS, no tokens, no NetworkPolicy. Anyone who reaches the
# port can move money, open issuer accounts and speak raft.
insecure = true
{{- else -}}
{{- fail "the nodes would listen on all interfaces without TLS and tokens and without the chart's NetworkPolicies: enable tls and auth (charts/README.md \"Security\"), keep networkPolicy.enabled, or set insecure=true explicitly" -}}
{{- end -}}
{{- end -}}

{{/* The name the nodes' certificate must carry for a client Service: <svc>.<ns>.svc.<domain>. */}}
{{- define "wallet.write.clientHost" -}}
{{- printf "%s.%s.svc.%s" (include "wallet.write.name" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- /* The read node a new read pod bootstraps from (readNode.bootstrapFrom): "" means the
       read Service, "none" nothing (renders empty). */ -}}
{{- define "wallet.read.bootstrapFrom" -}}
{{- $from := .Values.readNode.bootstrapFrom -}}
{{- if eq $from "" -}}{{ include "wallet.read.clientEndpoint" . }}{{- else if ne $from "none" -}}{{ $from }}{{- end -}}
{{- end -}}

{{- define "wallet.read.clientHost" -}}
{{- printf "%s.%s.svc.%s" (include "wallet.read.name" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The node's loopback address for its own probes: [::1] when it listens on IPv6. */}}
{{- define "wallet.loopback" -}}
{{- if contains ":" . -}}[::1]{{- else -}}127.0.0.1{{- end -}}
{{- end -}}

{{/*
A probe's handler and timings. Without TLS: Kubernetes' gRPC probe. With TLS (which
Kubernetes' gRPC probes do not speak): `walletctl health` run in the container, dialling the
node on loopback over TLS and verifying the client Service's name in its certificate (health
needs no token). Call with (dict "ctx" $ "node" $write "read" false "service" "liveness"
"settings" $write.probes.startup).
*/}}
{{- define "wallet.probe" -}}
{{- $ := .ctx -}}
{{- if $.Values.tls.enabled }}
{{- $tls := include "wallet.tls.dir" $ }}
exec:
  command:
    - /usr/local/bin/walletctl
    - --tls-ca
    - {{ $tls }}/ca.crt
    {{- if $.Values.tls.requireClientCert }}
    - --tls-cert
    - {{ $tls }}/tls.crt
    - --tls-key
    - {{ $tls }}/tls.key
    {{- end }}
    - --tls-server-name
    - {{ ternary (include "wallet.read.clientHost" $) (include "wallet.write.clientHost" $) .read }}
    - {{ ternary "--read-endpoint" "--endpoints" .read }}
    - {{ printf "%s:%d" (include "wallet.loopback" .node.config.listenAddress) (int .node.port) }}
    - health
    {{- if .read }}
    - --read
    {{- end }}
    - --service
    - {{ .service | quote }}
{{- else }}
grpc:
  port: {{ int .node.port }}
  service: {{ .service | quote }}
{{- end }}
{{ toYaml .settings }}
{{- end -}}

{{/* The TLS Secret of the read pods and the helm test pod: tls.readSecretName, or (for
     development only) the write nodes' tls.secretName when it is "". */}}
{{- define "wallet.tls.readSecretName" -}}
{{- if and .Values.tls.readSecretName (eq .Values.tls.readSecretName .Values.tls.secretName) -}}
{{- fail "tls.readSecretName must name a Secret other than tls.secretName (the read pods' own certificate, naming no write peer); leave it \"\" to share the write nodes' Secret in development" -}}
{{- end -}}
{{- .Values.tls.readSecretName | default .Values.tls.secretName -}}
{{- end -}}

{{/* The Secret volumes of a pod: call with (dict "ctx" $ "tls" (list keys...) "auth" (list
     keys...) "read" bool); an empty list (or a disabled feature) mounts nothing. The TLS
     files come from the read Secret when "read" is true, else from the write nodes'. Either
     way they are mounted at wallet.tls.dir, so the configuration paths are the same. */}}
{{- define "wallet.secretVolumes" -}}
{{- $ := .ctx -}}
{{- if and $.Values.tls.enabled .tls }}
- name: tls
  secret:
    secretName: {{ ternary (include "wallet.tls.readSecretName" $) $.Values.tls.secretName (default false .read) }}
    defaultMode: 0440
    items:
      {{- range .tls }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- if and $.Values.auth.enabled .auth }}
- name: auth
  secret:
    secretName: {{ $.Values.auth.secretName }}
    defaultMode: 0440
    items:
      {{- range .auth }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "wallet.secretMounts" -}}
{{- $ := .ctx -}}
{{- if and $.Values.tls.enabled .tls }}
- name: tls
  mountPath: {{ include "wallet.tls.dir" $ }}
  readOnly: true
{{- end }}
{{- if and $.Values.auth.enabled .auth }}
- name: auth
  mountPath: {{ include "wallet.auth.dir" $ }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The TLS files a client (the helm test pod) needs: the CA, and its certificate when the
     nodes require one (the read pods' certificate: it has the clientAuth usage). */}}
{{- define "wallet.tls.clientKeys" -}}
{{- if .Values.tls.requireClientCert -}}ca.crt,tls.crt,tls.key{{- else -}}ca.crt{{- end -}}
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
