{{/* Helpers of the ferrolb chart. */}}

{{/* Base name of every object: the release name if it contains "ferrolb", else "<release>-ferrolb". */}}
{{- define "ferrolb.fullname" -}}
{{- if contains "ferrolb" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-ferrolb" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferrolb.controller.name" -}}
{{- printf "%s-controller" (include "ferrolb.fullname" .) -}}
{{- end -}}

{{- define "ferrolb.speaker.name" -}}
{{- printf "%s-speaker" (include "ferrolb.fullname" .) -}}
{{- end -}}

{{- define "ferrolb.membershipSecret" -}}
{{- default (printf "%s-memberlist" (include "ferrolb.fullname" .)) .Values.speaker.membership.secretName -}}
{{- end -}}

{{/* "true" when a speaker is deployed (L2 or BGP enabled), else empty. */}}
{{- define "ferrolb.speaker.enabled" -}}
{{- if or .Values.speaker.l2.enabled .Values.speaker.bgp.enabled -}}true{{- end -}}
{{- end -}}

{{- define "ferrolb.labels" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ferrolb.controller.selector" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "ferrolb.speaker.selector" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: speaker
{{- end -}}

{{- define "ferrolb.controller.image" -}}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) -}}
{{- end -}}

{{- define "ferrolb.speaker.image" -}}
{{- printf "%s:%s" .Values.speaker.image.repository (default .Chart.AppVersion .Values.speaker.image.tag) -}}
{{- end -}}

{{/* Refusals of values the binaries cannot honour; included by the controller Deployment. */}}
{{- define "ferrolb.validate" -}}
{{- if and .Values.metrics.tls.enabled (not .Values.metrics.tls.secretName) -}}
{{- fail "metrics.tls.enabled needs metrics.tls.secretName (a kubernetes.io/tls Secret in the release namespace)" -}}
{{- end -}}
{{- if and .Values.speaker.membership.createSecret .Values.speaker.membership.controllerCreatesSecret -}}
{{- fail "speaker.membership: set createSecret (Helm makes the Secret) or controllerCreatesSecret (the controller does), not both" -}}
{{- end -}}
{{- if or (lt (int .Values.speaker.l2.burstIntervalMs) 1) (gt (int .Values.speaker.l2.burstIntervalMs) 60000) -}}
{{- fail "speaker.l2.burstIntervalMs must be between 1 and 60000" -}}
{{- end -}}
{{- if lt (int .Values.speaker.l2.burstRepeats) 0 -}}
{{- fail "speaker.l2.burstRepeats must not be negative" -}}
{{- end -}}
{{- if lt (int .Values.speaker.l2.quorum) 0 -}}
{{- fail "speaker.l2.quorum must not be negative (0: off)" -}}
{{- end -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection.enabled) -}}
{{- fail "controller.replicas > 1 needs controller.leaderElection.enabled (only the leader may write)" -}}
{{- end -}}
{{- if not (or (eq .Values.logging.format "text") (eq .Values.logging.format "json")) -}}
{{- fail "logging.format must be text or json" -}}
{{- end -}}
{{- if not (or (eq .Values.controller.stalePolicy "keep") (eq .Values.controller.stalePolicy "reassign")) -}}
{{- fail "controller.stalePolicy must be keep or reassign" -}}
{{- end -}}
{{- end -}}

{{/* "ADDR:PORT" (or "[ADDR]:PORT" for IPv6) from (list ADDR PORT). */}}
{{- define "ferrolb.hostPort" -}}
{{- $addr := index . 0 -}}
{{- $port := index . 1 -}}
{{- if contains ":" $addr -}}
{{- printf "[%s]:%v" $addr $port -}}
{{- else -}}
{{- printf "%s:%v" $addr $port -}}
{{- end -}}
{{- end -}}

