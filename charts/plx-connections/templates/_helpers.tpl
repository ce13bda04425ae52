{{/*
Names are cut to 63 characters (the DNS label limit), leaving room for the longest suffix.
*/}}
{{- define "plx-connections.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "plx-connections.webhook.name" -}}
{{- printf "%s-webhook" (include "plx-connections.fullname" .) -}}
{{- end -}}

{{- define "plx-connections.webhook.tlsSecret" -}}
{{- printf "%s-webhook-tls" (include "plx-connections.fullname" .) -}}
{{- end -}}

{{- define "plx-connections.catalog.name" -}}
{{- default (printf "%s-catalog" (include "plx-connections.fullname" .)) .Values.catalog.name -}}
{{- end -}}

{{- define "plx-connections.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "plx-connections.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
The label that keeps an object or a namespace away from the webhook.
*/}}
{{- define "plx-connections.optOut" -}}
plx-connections.io/validation: disabled
{{- end -}}

{{- define "plx-connections.webhook.image" -}}
{{- printf "%s:%s" .Values.webhook.image.repository (default .Chart.AppVersion .Values.webhook.image.tag) -}}
{{- end -}}

{{- define "plx-connections.init.image" -}}
{{- printf "%s:%s" .Values.init.image (default .Chart.AppVersion .Values.init.imageTag) -}}
{{- end -}}

{{- define "plx-connections.tests.image" -}}
{{- default (include "plx-connections.init.image" .) .Values.tests.image -}}
{{- end -}}

{{/*
The artifacts store Polyaxon uses: `artifactsStore`, else `defaultArtifactsStore`.
*/}}
{{- define "plx-connections.artifactsStore" -}}
{{- toJson (default .Values.defaultArtifactsStore .Values.artifactsStore) -}}
{{- end -}}

{{/*
The namespaces whose catalogs and run pods are reviewed (JSON list; empty: every namespace).
By default where Polyaxon runs: its release namespace (the agent's POLYAXON_K8S_NAMESPACE) and
Polyaxon's own `agent.additionalNamespaces`, read from the same values file.
*/}}
{{- define "plx-connections.reviewed" -}}
{{- $namespaces := .Values.webhook.namespaces | default list -}}
{{- if has "*" $namespaces -}}
[]
{{- else if $namespaces -}}
{{- toJson ($namespaces | uniq) -}}
{{- else -}}
{{- $agent := .Values.agent | default dict -}}
{{- toJson (concat (list .Release.Namespace) ($agent.additionalNamespaces | default list) | uniq) -}}
{{- end -}}
{{- end -}}

{{/*
The namespaces the webhook watches for cross-object checks (JSON list; empty: all). By default
the reviewed ones (the release namespace when every namespace is reviewed).
*/}}
{{- define "plx-connections.watched" -}}
{{- if .Values.webhook.crossChecks.allNamespaces -}}
[]
{{- else if .Values.webhook.crossChecks.namespaces -}}
{{- toJson (.Values.webhook.crossChecks.namespaces | uniq) -}}
{{- else -}}
{{- toJson (include "plx-connections.reviewed" . | fromJsonArray | default (list .Release.Namespace)) -}}
{{- end -}}
{{- end -}}

{{/*
A restricted container: non-root, read-only root filesystem, nothing added.
*/}}
{{- define "plx-connections.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65534
runAsGroup: 65534
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
imagePullSecrets as Polyaxon's values write them, plain names ([registry-credentials]), or as
Kubernetes does ([{name: registry-credentials}]): rendered as references either way.
*/}}
{{- define "plx-connections.imagePullSecrets" -}}
{{- range . }}
{{- if kindIs "string" . }}
- name: {{ . | quote }}
{{- else }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end }}
{{- end -}}
