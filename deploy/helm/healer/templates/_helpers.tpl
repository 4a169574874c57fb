{{/* Names, labels and shared snippets of the healer chart. */}}

{{- define "healer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "healer.fullname" -}}
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

{{- define "healer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "healer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "healer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "healer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "healer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "healer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "healer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "healer.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "healer.fullname" .)) .Values.policies.existingConfigMap }}
{{- end }}

{{/* Executors' namespace allow-list: explicit, else the namespaced-RBAC namespaces. */}}
{{- define "healer.allowedNamespaces" -}}
{{- if .Values.config.allowedNamespaces }}
{{- join "," .Values.config.allowedNamespaces }}
{{- else if and .Values.kubernetes.enabled (eq .Values.kubernetes.rbac.mode "namespaced") }}
{{- join "," .Values.kubernetes.rbac.namespaces }}
{{- end }}
{{- end }}

{{/* Rules of one RBAC file of deploy/rbac (the chart links it as files/rbac). */}}
{{- define "healer.rbacRules" -}}
{{- $doc := .root.Files.Get (printf "files/rbac/%s" .file) | fromYaml }}
{{- if not $doc.rules }}
{{- fail (printf "files/rbac/%s has no rules (is the deploy/rbac link intact?)" .file) }}
{{- end }}
{{- toYaml $doc.rules }}
{{- end }}

{{/* Kafka connection + security settings shared by the workers and the topic Job. */}}
{{- define "healer.kafkaEnv" -}}
- name: HEALER_APP_ID
  value: {{ .Values.appId | quote }}
- name: HEALER_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required (HOST:PORT[,HOST:PORT])" .Values.kafka.bootstrapServers | quote }}
- name: HEALER_TOPIC_PARTITIONS
  value: {{ .Values.kafka.topics.partitions | quote }}
- name: HEALER_TOPIC_REPLICAS
  value: {{ .Values.kafka.topics.replicas | quote }}
{{- if or .Values.kafka.tls.enabled .Values.kafka.sasl.enabled }}
- name: HEALER_KAFKA_SECURITY_PROTOCOL
  value: {{ printf "%s%s" (ternary "SASL_" "" .Values.kafka.sasl.enabled) (ternary "SSL" "PLAINTEXT" .Values.kafka.tls.enabled) | quote }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: HEALER_KAFKA_SSL_CAFILE
  value: /etc/healer/kafka-ca/{{ .Values.kafka.tls.caKey }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: HEALER_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: HEALER_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.enabled" .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: HEALER_KAFKA_SASL_PASSWORD_FILE
  value: /etc/healer/kafka-sasl/{{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end }}

{{- define "healer.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  mountPath: /etc/healer/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: kafka-sasl
  mountPath: /etc/healer/kafka-sasl
  readOnly: true
{{- end }}
{{- end }}

{{- define "healer.kafkaVolumes" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  secret:
    secretName: {{ required "kafka.tls.caSecret is required with kafka.tls.enabled" .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: {{ .Values.kafka.tls.caKey }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: kafka-sasl
  secret:
    secretName: {{ .Values.kafka.sasl.existingSecret }}
    items:
      - key: {{ .Values.kafka.sasl.passwordKey }}
        path: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end }}
