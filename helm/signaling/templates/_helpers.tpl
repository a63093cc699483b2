{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "signaling.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-signaling, or <release> when the release name already contains the chart name. */}}
{{- define "signaling.fullname" -}}
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

{{- define "signaling.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "web"). */}}
{{- define "signaling.labels" -}}
helm.sh/chart: {{ include "signaling.chart" .ctx }}
{{ include "signaling.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "signaling.name" .ctx }}
{{- end -}}

{{- define "signaling.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signaling.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "signaling.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "signaling.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "signaling.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "signaling.kms.fullname" -}}
{{- printf "%s-kms" (include "signaling.fullname" .) | trunc 54 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret shared with the Bitnami subcharts (their passwords). */}}
{{- define "signaling.credentialsSecretName" -}}
{{- printf "%s-signaling-credentials" .Release.Name -}}
{{- end -}}

{{/* Names the Bitnami subcharts give their resources (bitnami common.names.fullname). */}}
{{- define "signaling.subchartFullname" -}}
{{- $v := index .ctx.Values .chart -}}
{{- if $v.fullnameOverride -}}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .chart $v.nameOverride -}}
{{- if contains $name .ctx.Release.Name -}}
{{- .ctx.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .ctx.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Settings ---------------------------------------------------------------------------- */}}

{{/* Every shard queue a worker consumes: <prefix>.shard.0,...,<prefix>.shard.<SHARDS-1>. */}}
{{- define "signaling.shardQueues" -}}
{{- $queues := list -}}
{{- range $i := until (int .Values.settings.shards) -}}
{{- $queues = append $queues (printf "%s.shard.%d" $.Values.settings.signalingPrefix $i) -}}
{{- end -}}
{{- join "," $queues -}}
{{- end -}}

{{/* KMS_URLS: the external media servers; empty when the chart runs them (they are discovered). */}}
{{- define "signaling.kmsUrls" -}}
{{- if not .Values.kms.enabled -}}
{{- join "," .Values.kms.externalUrls -}}
{{- end -}}
{{- end -}}

{{/* KMS_DISCOVERY_DNS: the KMS headless Service, whose A records are the ready media server pods. */}}
{{- define "signaling.kmsDiscoveryDns" -}}
{{- if .Values.kms.enabled -}}
{{- printf "%s-headless.%s.svc.%s:%d/%s" (include "signaling.kms.fullname" .) .Release.Namespace .Values.kms.clusterDomain (int .Values.kms.port) .Values.kms.path -}}
{{- end -}}
{{- end -}}

{{/* Where each secret value comes from: (dict "name" <Secret> "key" <key>). */}}
{{- define "signaling.appSecretName" -}}
{{- default (include "signaling.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "signaling.brokerSecretName" -}}
{{- if and (not .Values.rabbitmq.enabled) .Values.externalRabbitmq.existingSecret -}}
{{- .Values.externalRabbitmq.existingSecret -}}
{{- else -}}
{{- printf "%s-connections" (include "signaling.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "signaling.databaseSecretName" -}}
{{- if and (not .Values.mongodb.enabled) .Values.externalMongodb.existingSecret -}}
{{- .Values.externalMongodb.existingSecret -}}
{{- else -}}
{{- printf "%s-connections" (include "signaling.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Environment of every service container: the ConfigMap plus secret references. The URLs are
     full values in Secrets (no $(VAR) expansion), so KEDA's hostFromEnv can read them too. */}}
{{- define "signaling.env" -}}
- name: RABBITMQ_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.brokerSecretName" . }}
      key: {{ .Values.externalRabbitmq.urlKey }}
- name: RABBITMQ_MGMT_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.brokerSecretName" . }}
      key: {{ .Values.externalRabbitmq.managementUrlKey }}
- name: MONGODB_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.databaseSecretName" . }}
      key: {{ .Values.externalMongodb.uriKey }}
- name: SIGNALING_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.appSecretName" . }}
      key: SIGNALING_API_KEYS
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.appSecretName" . }}
      key: SECRET_KEY
- name: WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.appSecretName" . }}
      key: WEBHOOK_SECRET
      # An existingSecret from before webhooks may not have it.
      optional: true
- name: TURN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "signaling.appSecretName" . }}
      key: TURN_SECRET
      # An existingSecret from before TURN may not have it: then no TURN credentials are handed out.
      optional: true
{{- end -}}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "signaling.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{/* Checks that fail rendering with a message ----------------------------------------- */}}
{{- define "signaling.validate" -}}
{{- $w := .Values.worker -}}
{{- if and $w.autoscaling.keda.enabled $w.autoscaling.hpa.enabled -}}
{{- fail "worker.autoscaling.keda.enabled and worker.autoscaling.hpa.enabled are both true: KEDA creates its own HPA for the worker Deployment and two autoscalers would fight over its replicas. Enable only one." -}}
{{- end -}}
{{- if le (int $w.terminationGracePeriodSeconds) (int $w.longestTaskSeconds) -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must exceed worker.longestTaskSeconds (%d), or scale-downs kill running tasks." (int $w.terminationGracePeriodSeconds) (int $w.longestTaskSeconds)) -}}
{{- end -}}
{{- if le (float64 .Values.web.gracefulTimeoutSeconds) (float64 .Values.settings.maxPollWaitS) -}}
{{- fail "web.gracefulTimeoutSeconds must exceed settings.maxPollWaitS so open long polls finish on shutdown." -}}
{{- end -}}
{{- if le (int .Values.web.terminationGracePeriodSeconds) (add (int .Values.web.gracefulTimeoutSeconds) (int .Values.web.preStopSleepSeconds)) -}}
{{- fail "web.terminationGracePeriodSeconds must exceed web.gracefulTimeoutSeconds + web.preStopSleepSeconds." -}}
{{- end -}}
{{- if .Values.rabbitmq.enabled -}}
{{- if or .Values.externalRabbitmq.url .Values.externalRabbitmq.existingSecret -}}
{{- fail "rabbitmq.enabled is true and externalRabbitmq is set: choose the bundled broker or an external one." -}}
{{- end -}}
{{- if ne (tpl .Values.rabbitmq.auth.existingPasswordSecret .) (include "signaling.credentialsSecretName" .) -}}
{{- fail (printf "rabbitmq.auth.existingPasswordSecret must stay %q: the chart writes the broker password there." (include "signaling.credentialsSecretName" .)) -}}
{{- end -}}
{{- else if not (or .Values.externalRabbitmq.existingSecret (and .Values.externalRabbitmq.url .Values.externalRabbitmq.managementUrl)) -}}
{{- fail "rabbitmq.enabled is false: set externalRabbitmq.url and externalRabbitmq.managementUrl, or externalRabbitmq.existingSecret." -}}
{{- end -}}
{{- if .Values.mongodb.enabled -}}
{{- if or .Values.externalMongodb.uri .Values.externalMongodb.existingSecret -}}
{{- fail "mongodb.enabled is true and externalMongodb is set: choose the bundled database or an external one." -}}
{{- end -}}
{{- if ne .Values.mongodb.architecture "replicaset" -}}
{{- fail "mongodb.architecture must be \"replicaset\": the service needs a replica set." -}}
{{- end -}}
{{- if ne (tpl .Values.mongodb.auth.existingSecret .) (include "signaling.credentialsSecretName" .) -}}
{{- fail (printf "mongodb.auth.existingSecret must stay %q: the chart writes the database passwords there." (include "signaling.credentialsSecretName" .)) -}}
{{- end -}}
{{- else if not (or .Values.externalMongodb.uri .Values.externalMongodb.existingSecret) -}}
{{- fail "mongodb.enabled is false: set externalMongodb.uri or externalMongodb.existingSecret." -}}
{{- end -}}
{{- if and (not .Values.kms.enabled) (not .Values.kms.externalUrls) -}}
{{- fail "kms.enabled is false: list the media servers in kms.externalUrls." -}}
{{- end -}}
{{- if and .Values.turn.enabled (not .Values.settings.turnUrls) -}}
{{- fail "turn.enabled is true: set settings.turnUrls to the turn: URLs clients reach the chart's coturn at (its public address and turn.port)." -}}
{{- end -}}
{{- if gt (int .Values.turn.minPort) (int .Values.turn.maxPort) -}}
{{- fail "turn.minPort must not exceed turn.maxPort." -}}
{{- end -}}
{{- end -}}

{{- define "signaling.turn.fullname" -}}
{{- printf "%s-turn" (include "signaling.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
