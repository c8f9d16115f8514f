{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "rssn-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "rssn-hub.fullname" -}}
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

{{- define "rssn-hub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "rssn-hub.commonLabels" -}}
helm.sh/chart: {{ include "rssn-hub.chart" . }}
app.kubernetes.io/name: {{ include "rssn-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rssn
{{- end }}

{{/* The serving pods only: the Service, PDB and spread constraints select these, never
the migration job's or the test's pods. */}}
{{- define "rssn-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rssn-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "rssn-hub.labels" -}}
{{ include "rssn-hub.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "rssn-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rssn-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rssn-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Environment shared by the serving pods and the migration job. */}}
{{- define "rssn-hub.env" -}}
- name: RSSN_ROLE
  value: hub
- name: RSSN_DATA_DIR
  value: /data
- name: RSSN_PORT
  value: "8000"
# Secrets arrive as files (the entry point reads them and drops a trailing newline, which
# `kubectl create secret --from-file` would otherwise keep inside the passphrase).
- name: RSSN_HUB_DB_FILE
  value: /run/secrets/rssn/database-url
- name: RSSN_HUB_PASSPHRASE_FILE
  value: /run/secrets/rssn/passphrase
- name: RSSN_HUB_PUBLIC_URL
  value: {{ required "hub.publicUrl is required" .Values.hub.publicUrl | quote }}
- name: RSSN_HUB_LOG_LEVEL
  value: {{ .Values.hub.logLevel | quote }}
{{- with .Values.hub.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "rssn-hub.volumes" -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
          items:
            - key: {{ .Values.database.urlKey }}
              path: database-url
      - secret:
          name: {{ required "passphrase.existingSecret is required" .Values.passphrase.existingSecret }}
          items:
            - key: {{ .Values.passphrase.key }}
              path: passphrase
- name: data
  emptyDir: {}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- end }}

{{- define "rssn-hub.volumeMounts" -}}
- name: secrets
  mountPath: /run/secrets/rssn
  readOnly: true
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- end }}
