{{/* Labels on every object: the same two as the kustomize base, plus Helm's own. */}}
{{- define "netpol-guard.labels" -}}
app.kubernetes.io/name: netpol-guard
app.kubernetes.io/part-of: netpol-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "netpol-guard.podLabels" -}}
app.kubernetes.io/name: netpol-guard
app.kubernetes.io/component: webhook
{{- end }}

{{/* The failurePolicy the webhooks get once armed. */}}
{{- define "netpol-guard.failurePolicy" -}}
{{- if .Values.webhook.failurePolicy -}}
{{- .Values.webhook.failurePolicy -}}
{{- else if eq .Values.mode "audit" -}}
Ignore
{{- else -}}
Fail
{{- end -}}
{{- end }}

{{/* Namespaces the webhooks never send: the system ones and our own. */}}
{{- define "netpol-guard.excluded" -}}
[kube-system, kube-public, kube-node-lease, {{ .Release.Namespace }}]
{{- end }}

{{- define "netpol-guard.validate" -}}
{{- if not (has .Values.mode (list "enforce" "audit")) -}}
{{- fail (printf "mode must be enforce or audit, not %q" .Values.mode) -}}
{{- end -}}
{{- if not (has .Values.certificates.mode (list "self-signed" "cert-manager" "files")) -}}
{{- fail (printf "certificates.mode must be self-signed, cert-manager or files, not %q" .Values.certificates.mode) -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "files") (not .Values.certificates.files.caBundle) -}}
{{- fail "certificates.mode files needs certificates.files.caBundle (base64 PEM of the CA of files.secretName)" -}}
{{- end -}}
{{- if and .Values.webhook.failurePolicy (not (has .Values.webhook.failurePolicy (list "Fail" "Ignore"))) -}}
{{- fail (printf "webhook.failurePolicy must be Fail, Ignore or empty, not %q" .Values.webhook.failurePolicy) -}}
{{- end -}}
{{- end }}
