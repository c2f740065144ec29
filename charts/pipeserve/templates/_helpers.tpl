{{/* Names are cut to 63 characters: the limit of Kubernetes names and label values. */}}
{{- define "pipeserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pipeserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pipeserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pipeserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipeserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "pipeserve.labels" -}}
{{ include "pipeserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "pipeserve.chart" . }}
{{- end -}}

{{- define "pipeserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pipeserve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pipeserve.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The metrics Service's name: the full name cut so that "-metrics" always fits. */}}
{{- define "pipeserve.metricsServiceName" -}}
{{- printf "%s-metrics" (include "pipeserve.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* The operator's command line: the scope it watches, its probe, its metrics, its peering. */}}
{{- define "pipeserve.operatorArgs" -}}
- operator
{{- if .Values.operator.watchAllNamespaces }}
- --all-namespaces
{{- else }}
{{- range .Values.operator.watchNamespaces }}
- --namespace
- {{ . | quote }}
{{- end }}
{{- end }}
- --liveness
- {{ printf "http://0.0.0.0:%d/healthz" (int .Values.operator.healthPort) | quote }}
{{- if .Values.operator.metrics.enabled }}
- --metrics-port
- {{ .Values.operator.metrics.port | int | toString | quote }}
{{- end }}
{{- if .Values.operator.peering.enabled }}
- --peering
- {{ .Values.operator.peering.name | quote }}
{{- else }}
- --standalone
{{- end }}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- end -}}

{{/*
Cross-field checks the schema cannot express. Every problem is listed with the --set that
fixes it, and the chart fails once with all of them.
*/}}
{{- define "pipeserve.validateValues" -}}
{{- $errors := list -}}
{{- $op := .Values.operator -}}
{{- if and $op.watchAllNamespaces $op.watchNamespaces -}}
{{- $errors = append $errors (printf "operator.watchNamespaces %v is set while operator.watchAllNamespaces is true: pick one, --set operator.watchAllNamespaces=false to watch only those namespaces, or --set operator.watchNamespaces=null to watch all" $op.watchNamespaces) -}}
{{- end -}}
{{- if and (not $op.watchAllNamespaces) (not $op.watchNamespaces) -}}
{{- $errors = append $errors "operator.watchNamespaces is empty and operator.watchAllNamespaces is false, so the operator would watch nothing: --set operator.watchNamespaces={my-namespace} or --set operator.watchAllNamespaces=true" -}}
{{- end -}}
{{- $namespaces := $op.watchNamespaces | default list -}}
{{- if ne (len (uniq $namespaces)) (len $namespaces) -}}
{{- $errors = append $errors (printf "operator.watchNamespaces %v names a namespace twice: list each once" $op.watchNamespaces) -}}
{{- end -}}
{{- if and (gt (int $op.replicas) 1) (not $op.peering.enabled) -}}
{{- $errors = append $errors (printf "operator.replicas is %d but operator.peering.enabled is false, so every replica would handle every PipelineService: --set operator.peering.enabled=true or --set operator.replicas=1" (int $op.replicas)) -}}
{{- end -}}
{{- if and $op.metrics.enabled (eq (int $op.metrics.port) (int $op.healthPort)) -}}
{{- $errors = append $errors (printf "operator.metrics.port %d is operator.healthPort too, and one port serves one endpoint: --set operator.metrics.port=<another port> or --set operator.metrics.enabled=false" (int $op.metrics.port)) -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- $errors = append $errors "serviceAccount.create is false but serviceAccount.name is empty: --set serviceAccount.name=<existing account> or --set serviceAccount.create=true" -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nERROR: invalid values for the pipeserve chart:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
