{{/* Names and labels shared by every object of the release. */}}
{{- define "cds.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cds.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cds.labels" -}}
{{ include "cds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cds.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "cds.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "cds.fullname" .)) -}}
{{- end -}}

{{- define "cds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "cds.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Refuse to render an install that could not start: fail here, not in a crash loop. */}}
{{- define "cds.checkValues" -}}
{{- if not .Values.publicBaseUrl -}}
{{- fail "publicBaseUrl is required: the https URL EHRs call (JWT audience)" -}}
{{- end -}}
{{- if not (hasPrefix "https://" .Values.publicBaseUrl) -}}
{{- fail "publicBaseUrl must be an https URL" -}}
{{- end -}}
{{- if not .Values.trust.issuers -}}
{{- fail "trust.issuers needs at least one trusted CDS client (see docs/security.md)" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if not (and .Values.secrets.databaseUrl .Values.secrets.patientHashKey) -}}
{{- fail "set secrets.existingSecret, or secrets.databaseUrl and secrets.patientHashKey" -}}
{{- end -}}
{{- if and .Values.analytics.enabled (not .Values.secrets.analyticsToken) -}}
{{- fail "analytics.enabled needs secrets.analyticsToken" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod's environment: settings from the ConfigMap, secrets from the Secret. */}}
{{- define "cds.envFrom" -}}
- configMapRef:
    name: {{ include "cds.fullname" . }}-env
- secretRef:
    name: {{ include "cds.secretName" . }}
{{- end -}}

{{/* Hardened container: non-root, read-only root file system, no privileges. */}}
{{- define "cds.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
