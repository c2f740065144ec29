{{- define "pipeline.name" -}}
{{- default .Release.Name .Values.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pipeline.labels" -}}
app.kubernetes.io/name: {{ include "pipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
Checks the CRD schema cannot make: each problem with the --set that fixes it, all at once.
The operator checks the DAG itself (cycles, unknown inputs) and reports it in the status.
*/}}
{{- define "pipeline.validateValues" -}}
{{- $errors := list -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (include "pipeline.name" .)) -}}
{{- $errors = append $errors (printf "the PipelineService name %q is not a DNS label (lower case letters, digits, '-'): --set name=my-pipeline" (include "pipeline.name" .)) -}}
{{- end -}}
{{- $names := list -}}
{{- range $i, $op := .Values.spec.ops -}}
{{- if has $op.name $names -}}
{{- $errors = append $errors (printf "spec.ops[%d].name %q is used by an earlier op: give each op its own name in the spec.ops list of your values file (--set on one list item replaces the whole list)" $i $op.name) -}}
{{- end -}}
{{- $names = append $names $op.name -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nERROR: invalid values for the pipeline chart:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
