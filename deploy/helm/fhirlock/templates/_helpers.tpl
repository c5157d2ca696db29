{{/* The chart name, or nameOverride. */}}
{{- define "fhirlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of every namespaced object and of the cluster-scoped RBAC: "fhirlock" for a release
     named fhirlock, else "<release>-fhirlock"; fullnameOverride wins. */}}
{{- define "fhirlock.fullname" -}}
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

{{- define "fhirlock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fhirlock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fhirlock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fhirlock.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fhirlock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fhirlock.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fhirlock.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The operator configuration file (crates/fhirlock/src/config.rs): cloud and tenants. */}}
{{- define "fhirlock.config" -}}
{{- $cloud := dict }}
{{- with .Values.cloud.armEndpoint }}{{ $_ := set $cloud "armEndpoint" . }}{{ end }}
{{- with .Values.cloud.audience }}{{ $_ := set $cloud "audience" . }}{{ end }}
{{- with .Values.cloud.authorityHost }}{{ $_ := set $cloud "authorityHost" . }}{{ end }}
{{- if .Values.cloud.caBundle.configMapName }}{{ $_ := set $cloud "caBundle" (printf "/etc/fhirlock/ca/%s" .Values.cloud.caBundle.key) }}{{ end }}
{{- $cfg := dict "tenants" .Values.tenants }}
{{- if $cloud }}{{ $_ := set $cfg "cloud" $cloud }}{{ end }}
{{- toYaml $cfg }}
{{- end }}
