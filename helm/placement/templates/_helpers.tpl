{{/* Names. The full name leaves room for the longest suffix (-operator, -policies) in 63. */}}
{{- define "placement.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "placement.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "placement.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "placement.serviceAccount" -}}
{{- default (include "placement.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "placement.labels" -}}
app.kubernetes.io/name: {{ include "placement.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "placement.selector" -}}
app.kubernetes.io/name: {{ include "placement.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "placement.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the policy bundle is read from */}}
{{- define "placement.configDir" -}}
{{- if .Values.policies.gitSync.enabled -}}
{{- printf "/git/current/%s" .Values.policies.gitSync.path | trimSuffix "/" -}}
{{- else if .Values.policies.files -}}
/etc/placement/policies
{{- else -}}
/app/policies/examples
{{- end -}}
{{- end -}}

{{/* Environment shared by the API and the operator */}}
{{- define "placement.env" -}}
- name: PLACEMENT_CONFIG_DIR
  value: {{ include "placement.configDir" . | quote }}
{{- if .Values.database.existingSecret }}
- name: PLACEMENT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.secretKey }}
{{- else }}
- name: PLACEMENT_DATABASE_URL
  value: sqlite:////var/lib/placement/placement.db
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: PLACEMENT_KUBECONFIG
  value: /etc/placement/kube/config
{{- end }}
{{- if .Values.tokens.existingSecret }}
- name: PLACEMENT_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.tokens.existingSecret }}
      key: token
{{- end }}
{{- if .Values.prometheus.url }}
- name: PLACEMENT_PROMETHEUS_URL
  value: {{ .Values.prometheus.url | quote }}
{{- end }}
{{- if .Values.bursts.enabled }}
- name: PLACEMENT_BURSTS
  value: "true"
{{- if .Values.bursts.backend }}
- name: PLACEMENT_PULUMI_BACKEND
  value: {{ .Values.bursts.backend | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "placement.envFrom" -}}
{{- if and .Values.bursts.enabled .Values.bursts.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.bursts.credentialsSecret }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts shared by the API and the operator */}}
{{- define "placement.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if not .Values.database.existingSecret }}
- name: data
  emptyDir: {}
{{- end }}
{{- if .Values.policies.gitSync.enabled }}
- name: git
  emptyDir: {}
{{- if .Values.policies.gitSync.existingSecret }}
- name: git-secret
  secret:
    secretName: {{ .Values.policies.gitSync.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- else if .Values.policies.files }}
- name: policies
  configMap:
    name: {{ include "placement.fullname" . }}-policies
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: kubeconfig
  secret:
    secretName: {{ .Values.kubeconfig.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "placement.mounts" -}}
- name: tmp
  mountPath: /tmp
{{- if not .Values.database.existingSecret }}
- name: data
  mountPath: /var/lib/placement
{{- end }}
{{- if .Values.policies.gitSync.enabled }}
- name: git
  mountPath: /git
  readOnly: true
{{- else if .Values.policies.files }}
- name: policies
  mountPath: /etc/placement/policies
  readOnly: true
{{- end }}
{{- if .Values.kubeconfig.existingSecret }}
- name: kubeconfig
  mountPath: /etc/placement/kube
  readOnly: true
{{- end }}
{{- end -}}

{{/* The git-sync sidecar */}}
{{- define "placement.gitSync" -}}
{{- if .Values.policies.gitSync.enabled }}
- name: git-sync
  image: {{ .Values.policies.gitSync.image }}
  args:
    - --repo={{ .Values.policies.gitSync.repo }}
    - --ref={{ .Values.policies.gitSync.ref }}
    - --root=/git
    - --link=current
    - --period={{ .Values.policies.gitSync.period }}s
    {{- if .Values.policies.gitSync.existingSecret }}
    - --ssh-key-file=/etc/git-secret/ssh
    - --ssh-known-hosts-file=/etc/git-secret/known_hosts
    {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 100m, memory: 128Mi}
  volumeMounts:
    - name: git
      mountPath: /git
    - name: tmp
      mountPath: /tmp
    {{- if .Values.policies.gitSync.existingSecret }}
    - name: git-secret
      mountPath: /etc/git-secret
      readOnly: true
    {{- end }}
{{- end }}
{{- end -}}


{{/* Scheduling shared by every pod: node selector, affinity, tolerations and topology spread
constraints; a constraint without a labelSelector spreads the pod's own component. */}}
{{- define "placement.scheduling" -}}
{{- $root := .root -}}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
{{- $constraint := deepCopy . }}
{{- if not $constraint.labelSelector }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "placement.selector" (dict "root" $root "component" $.component) | fromYaml)) }}
{{- end }}
  - {{ toYaml $constraint | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The operator's rights on namespaced things: Workloads, their status, events, peering */}}
{{- define "placement.namespacedRules" -}}
- apiGroups: [placement.dev]
  resources: [workloads]
  verbs: [get, list, watch, patch]
- apiGroups: [placement.dev]
  resources: [workloads/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [kopf.dev]
  resources: [{{ .peering }}]
  verbs: [get, list, watch, patch]
{{- end -}}
