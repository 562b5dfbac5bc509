{{/* Names, labels and the values every template derives from. */}}

{{- define "hotswap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hotswap.fullname" -}}
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

{{- define "hotswap.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hotswap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hotswap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The in-cluster rollout driver's pods: a name of their own, so that no
selector of the server pods (Deployment, Service) selects them. */}}
{{- define "hotswap.rolloutDriverSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hotswap.name" . }}-rollout-driver
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: rollout-driver
{{- end }}

{{- define "hotswap.labels" -}}
helm.sh/chart: {{ include "hotswap.chart" . }}
{{ include "hotswap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* image REPO TAG DIGEST -> repo@digest, or repo:tag (tag defaults to appVersion). */}}
{{- define "hotswap.image" -}}
{{- $img := index . 0 }}{{- $ctx := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $ctx.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "hotswap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hotswap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Is Kubernetes reporting possibly on ("true" or "")? */}}
{{- define "hotswap.reporting" -}}
{{- if ne .Values.kube.reporting "off" }}true{{ end }}
{{- end }}

{{/* Does hotswap read the release ConfigMap through the API? */}}
{{- define "hotswap.informer" -}}
{{- if and .Values.release.configMap.enabled (eq .Values.release.configMap.via "informer") }}true{{ end }}
{{- end }}

{{/* Does hotswap talk to the apiserver at all (token, RBAC)? */}}
{{- define "hotswap.needsAPI" -}}
{{- if or (include "hotswap.reporting" .) (include "hotswap.informer" .) }}true{{ end }}
{{- end }}

{{/* The admission policy is cluster scoped: its name carries the namespace. */}}
{{- define "hotswap.policyName" -}}
{{- printf "%s.%s.hotswap.dev" (include "hotswap.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "hotswap.configMapName" -}}
{{- default (printf "%s-release" (include "hotswap.fullname" .)) .Values.release.configMap.name }}
{{- end }}

{{/* Path of the hotswap binary in the server container. */}}
{{- define "hotswap.binary" -}}
{{- if eq .Values.hotswapBinary.from "image" }}
{{- .Values.hotswapBinary.path }}
{{- else }}
{{- "/opt/hotswap/hotswap" }}
{{- end }}
{{- end }}

{{- define "hotswap.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (int .Values.timeouts.graceSeconds) 10 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
hotswap.args: the hotswap command line as a YAML list, one flag per item,
then "--" and the server command. Every flag here must exist in
`hotswap flags-doc`; the chart's tests check that for each tested
combination of values.
*/}}
{{- define "hotswap.args" -}}
{{- $v := .Values }}
{{- $a := list "run" }}
{{- if eq $v.mode "handoff" }}
{{- range $v.listeners }}
{{- $a = append $a (printf "--listen=%s=tcp://%s:%d" .name (.host | default "") (int .port)) }}
{{- end }}
{{- end }}
{{- $a = append $a (printf "--mode=%s" $v.mode) }}
{{- with $v.ready }}{{ $a = append $a (printf "--ready=%s" .) }}{{ end }}
{{- $a = append $a (printf "--notify-access=%s" $v.notifyAccess) }}
{{- $a = append $a (printf "--stop-signal=%s" $v.signals.stop) }}
{{- $a = append $a (printf "--swap-signal=%s" $v.signals.swap) }}
{{- range $v.signals.rewrite }}{{ $a = append $a (printf "--rewrite=%s" .) }}{{ end }}
{{- $a = append $a (printf "--start-timeout=%ds" (int $v.timeouts.startSeconds)) }}
{{- $a = append $a (printf "--drain-timeout=%ds" (int $v.timeouts.drainSeconds)) }}
{{- $a = append $a (printf "--grace=%ds" (int $v.timeouts.graceSeconds)) }}
{{- $a = append $a (printf "--on-exit=%s" $v.onExit) }}
{{- $a = append $a (printf "--max-generations=%d" (int $v.maxGenerations)) }}
{{- $a = append $a "--runtime-dir=/run/hotswap" }}
{{- $a = append $a (printf "--log-format=%s" $v.log.format) }}
{{- $a = append $a (printf "--log-level=%s" $v.log.level) }}
{{- with $v.release.version }}{{ $a = append $a (printf "--release-version=%s" .) }}{{ end }}
{{- if $v.release.root }}
{{- $a = append $a (printf "--release-root=%s" $v.release.root) }}
{{- else if $v.release.volume.enabled }}
{{- $a = append $a (printf "--release-root=%s" $v.release.volume.mountPath) }}
{{- end }}
{{- if $v.release.requireSha256 }}{{ $a = append $a "--require-sha256" }}{{ end }}
{{- with $v.release.preflight }}{{ $a = append $a (printf "--preflight=%s" .) }}{{ end }}
{{- with $v.release.settle }}{{ $a = append $a (printf "--settle=%s" .) }}{{ end }}
{{- with $v.release.watch }}{{ $a = append $a (printf "--watch=%s" .) }}{{ end }}
{{- if $v.release.configMap.enabled }}
{{- if eq $v.release.configMap.via "informer" }}
{{- $a = append $a (printf "--configmap=%s" (include "hotswap.configMapName" .)) }}
{{- $a = append $a (printf "--configmap-key=%s" $v.release.configMap.key) }}
{{- else }}
{{- $a = append $a (printf "--manifest=%s/%s" $v.release.configMap.mountPath $v.release.configMap.key) }}
{{- end }}
{{- end }}
{{- $a = append $a (printf "--kube=%s" $v.kube.reporting) }}
{{- if $v.kube.unreadyDuringSwap }}{{ $a = append $a "--unready-during-swap" }}{{ end }}
{{- if $v.admin.enabled }}{{ $a = append $a (printf "--admin-addr=:%d" (int $v.admin.port)) }}{{ end }}
{{- $a = concat $a $v.extraArgs (list "--") $v.command }}
{{- toYaml $a }}
{{- end }}

{{/* Refuse combinations the schema cannot express, with what to do. */}}
{{- define "hotswap.validate" -}}
{{- $v := .Values }}
{{- if le (int (include "hotswap.terminationGracePeriodSeconds" .)) (int $v.timeouts.graceSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%s) must be above timeouts.graceSeconds (%d): otherwise the kubelet SIGKILLs hotswap while generations still drain" (include "hotswap.terminationGracePeriodSeconds" .) (int $v.timeouts.graceSeconds)) }}
{{- end }}
{{- if and $v.reuseport.migrateReq (ne $v.mode "reuseport") }}
{{- fail "reuseport.migrateReq is for mode=reuseport only: in handoff mode hotswap owns one socket and nothing is reset; drop it" }}
{{- end }}
{{- if and $v.kube.readinessGate (eq $v.kube.reporting "off") }}
{{- fail "kube.readinessGate needs kube.reporting auto or on: nothing would set hotswap.dev/ready and the pods would never be Ready; set kube.readinessGate=false" }}
{{- end }}
{{- if and $v.kube.unreadyDuringSwap (eq $v.kube.reporting "off") }}
{{- fail "kube.unreadyDuringSwap needs kube.reporting auto or on" }}
{{- end }}
{{- if and (include "hotswap.needsAPI" .) (not $v.rbac.create) (not $v.serviceAccount.name) }}
{{- fail "rbac.create=false: name a serviceAccount.name that already has the permissions hotswap needs (docs/helm.md lists them), or set kube.reporting=off" }}
{{- end }}
{{- if and $v.release.watch (not $v.release.volume.enabled) (not $v.extraVolumeMounts) }}
{{- fail "release.watch is set but no volume holds it: set release.volume.enabled=true (emptyDir or existingClaim) or mount one with extraVolumeMounts" }}
{{- end }}
{{- if and $v.admin.serviceMonitor.enabled (not $v.admin.enabled) }}
{{- fail "admin.serviceMonitor.enabled needs admin.enabled" }}
{{- end }}
{{- if and $v.admin.serviceMonitor.enabled (not (and $v.service.enabled $v.service.exposeAdmin)) }}
{{- fail "admin.serviceMonitor.enabled needs service.enabled and service.exposeAdmin (a ServiceMonitor selects a Service port)" }}
{{- end }}
{{- if and (eq $v.mode "handoff") (not $v.listeners) }}
{{- fail "mode=handoff needs at least one listener (listeners: [{name: http, port: 8080}])" }}
{{- end }}
{{- $seen := dict }}
{{- range $v.listeners }}
{{- if and $v.admin.enabled (eq (int .port) (int $v.admin.port)) }}
{{- fail (printf "listener %s uses port %d, which is admin.port: pick another" .name (int .port)) }}
{{- end }}
{{- if hasKey $seen .name }}
{{- fail (printf "listener name %s appears twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
{{- end }}
