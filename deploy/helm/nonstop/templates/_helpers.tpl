{{/* Names: <release>-nonstop, unless the release name already says nonstop. */}}
{{- define "nonstop.fullname" -}}
{{- if contains "nonstop" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-nonstop" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "nonstop.selectorLabels" -}}
app.kubernetes.io/name: nonstop
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "nonstop.labels" -}}
{{ include "nonstop.selectorLabels" . }}
app.kubernetes.io/part-of: nonstop
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ include "nonstop.tag" .root | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "nonstop.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* The image of one tier: <prefix>/<name>:<tag>, or @<digest> when one is given. */}}
{{- define "nonstop.image" -}}
{{- $digest := index .root.Values.image.digests .tier -}}
{{- if $digest -}}
{{- printf "%s/%s@%s" .root.Values.image.prefix .name $digest -}}
{{- else -}}
{{- printf "%s/%s:%s" .root.Values.image.prefix .name (include "nonstop.tag" .root) -}}
{{- end -}}
{{- end -}}

{{- define "nonstop.coreServiceName" -}}
{{- printf "%s-core" (include "nonstop.fullname" .) -}}
{{- end -}}

{{/* The variables the kubelet gives every pod for a Service created before it: <NAME>_SERVICE_HOST. */}}
{{- define "nonstop.coreServiceEnvPrefix" -}}
{{- include "nonstop.coreServiceName" . | upper | replace "-" "_" -}}
{{- end -}}

{{/* Knock ports as [from, to] pairs: the range, or each port of a static sequence. */}}
{{- define "nonstop.knockPortRanges" -}}
{{- $k := .Values.gateway.knock -}}
{{- if eq $k.mode "static" -}}
{{- range $k.sequence }}
- [{{ . }}, {{ . }}]
{{- end }}
{{- else -}}
{{- $r := splitList "-" $k.portRange }}
- [{{ index $r 0 }}, {{ index $r 1 }}]
{{- end -}}
{{- end -}}

{{/*
Pod Security "restricted" for a container: non-root, no privilege escalation, no
capabilities, the runtime's seccomp profile, a read-only root.
*/}}
{{- define "nonstop.restrictedContainerSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "nonstop.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The images' HEALTHCHECK: GET /healthz on the tier's loopback metrics port. */}}
{{- define "nonstop.probes" -}}
startupProbe:
  exec:
    command: ["/usr/local/bin/nonstop-healthcheck"]
  periodSeconds: 2
  timeoutSeconds: 4
  failureThreshold: {{ .startupFailures }}
readinessProbe:
  exec:
    command: ["/usr/local/bin/nonstop-healthcheck"]
  periodSeconds: 5
  timeoutSeconds: 4
  failureThreshold: 2
livenessProbe:
  exec:
    command: ["/usr/local/bin/nonstop-healthcheck"]
  periodSeconds: 10
  timeoutSeconds: 4
  failureThreshold: 3
{{- end -}}

{{- define "nonstop.tmpVolumes" -}}
- name: run
  emptyDir: {medium: Memory, sizeLimit: 16Mi}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: {{ .tmpSize }}}
{{- end -}}

{{- define "nonstop.tmpMounts" -}}
- {name: run, mountPath: /run/nonstop}
- {name: tmp, mountPath: /tmp}
{{- end -}}
