{{/*
Names. fullname is the release name when it already contains the chart name
(release "shoal" gives "shoal" and the headless Service "shoal-gossip").
*/}}
{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shoal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard labels on every object. */}}
{{- define "shoal.labels" -}}
helm.sh/chart: {{ include "shoal.chart" . }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: cache
app.kubernetes.io/part-of: shoal
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels that make a pod a member of this cache cluster: what the headless
Service (and the PodMonitor, NetworkPolicy, PDB) select. In sidecar mode the
pods are the app's, so they join by one label of their own instead of
carrying shoal's app.kubernetes.io/name.
*/}}
{{- define "shoal.memberLabels" -}}
{{- if eq .Values.mode "sidecar" -}}
{{ .Values.sidecar.memberLabel }}: {{ include "shoal.fullname" . }}
{{- else -}}
{{ include "shoal.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "shoal.gossipService" -}}
{{- printf "%s-gossip" (include "shoal.fullname" .) }}
{{- end }}

{{/* Fully qualified with a trailing dot: no ndots:5 search-domain queries. */}}
{{- define "shoal.seed" -}}
{{- printf "%s.%s.svc.%s." (include "shoal.gossipService" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "shoal.keyringSecret" -}}
{{- .Values.keyring.existingSecret | default (printf "%s-keyring" (include "shoal.fullname" .)) }}
{{- end }}

{{- define "shoal.keyringKey" -}}
{{- if .Values.keyring.existingSecret }}{{ .Values.keyring.existingSecretKey }}{{ else }}keyring{{ end }}
{{- end }}

{{- define "shoal.serviceAccountName" -}}
{{- if eq .Values.mode "sidecar" }}
{{- .Values.sidecar.serviceAccountName | default "default" }}
{{- else if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "shoal.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "shoal.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Whole seconds (rounded up) of a duration written as one number and one unit
(ms, s, m, h); values.schema.json only lets such durations through here.
*/}}
{{- define "shoal.seconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if hasSuffix "s" $d }}
{{- trimSuffix "s" $d | atoi }}
{{- else if hasSuffix "m" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else if hasSuffix "h" $d }}
{{- mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else }}
{{- fail (printf "duration %q: write a number and one unit of ms, s, m, h" $d) }}
{{- end }}
{{- end }}

{{/*
Checks the values that the schema cannot: cross-field rules. Included by the
ConfigMap, which every mode renders.
*/}}
{{- define "shoal.validate" -}}
{{- $preStop := int .Values.preStopSleepSeconds }}
{{- $drain := include "shoal.seconds" .Values.node.drain | atoi }}
{{- $peer := include "shoal.seconds" .Values.peer.timeout | atoi }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add $preStop $drain $peer) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) + node.drain (%s) + peer.timeout (%s): the grace period starts with the preStop wait, the node then drains for node.drain after SIGTERM, and requests in flight may wait peer.timeout" (int .Values.terminationGracePeriodSeconds) $preStop .Values.node.drain .Values.peer.timeout) }}
{{- end }}
{{- $ports := list (int .Values.ports.service) (int .Values.ports.peer) (int .Values.ports.gossip) (int .Values.ports.admin) }}
{{- if ne (len (uniq $ports)) 4 }}
{{- fail "ports.service, ports.peer, ports.gossip and ports.admin must differ" }}
{{- end }}
{{- if and .Values.groups .Values.defaultGroup (not (hasKey .Values.groups .Values.defaultGroup)) }}
{{- fail (printf "defaultGroup %q is not one of groups (%s)" .Values.defaultGroup (keys .Values.groups | sortAlpha | join ", ")) }}
{{- end }}
{{- if and (not .Values.groups) .Values.defaultGroup (ne .Values.defaultGroup "heavy") }}
{{- fail (printf "defaultGroup %q: with no groups set only the demo group \"heavy\" exists" .Values.defaultGroup) }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") .Values.kubernetesDiscovery.enabled (not .Values.sidecar.serviceAccountName) }}
{{- fail "sidecar mode with kubernetesDiscovery.enabled: set sidecar.serviceAccountName to the app pods' ServiceAccount, which the RoleBinding grants" }}
{{- end }}
{{- if and .Values.sidecar.example.enabled (ne .Values.mode "sidecar") }}
{{- fail "sidecar.example.enabled needs mode: sidecar" }}
{{- end }}
{{- end }}

{{/* The node's config file, rendered into the ConfigMap. */}}
{{- define "shoal.configFile" -}}
# shoal config file, rendered by the chart (README "Configuration file").
# Pod-specific settings come from the environment: POD_NAME, POD_IP.
node:
  drain: {{ .Values.node.drain }}
  max_key: {{ .Values.node.maxKey }}
  {{- if eq .Values.mode "sidecar" }}
  # Sidecars share the app's network namespace: only the pod's own
  # containers reach the service port.
  service_bind: 127.0.0.1
  {{- end }}
  ports:
    service: {{ .Values.ports.service }}
    peer: {{ .Values.ports.peer }}
    gossip: {{ .Values.ports.gossip }}
    admin: {{ .Values.ports.admin }}
peer:
  timeout: {{ .Values.peer.timeout }}
  connect_timeout: {{ .Values.peer.connectTimeout }}
discovery:
  # The headless Service publishes every member, ready or not.
  seeds:
    - {{ include "shoal.seed" . }}
  resolve_interval: {{ .Values.discovery.resolveInterval }}
  {{- if .Values.kubernetesDiscovery.enabled }}
  kubernetes:
    enabled: true
    namespace: {{ .Release.Namespace }}
    service: {{ include "shoal.gossipService" . }}
  {{- end }}
membership:
  profile: {{ .Values.membership.profile }}
  {{- with .Values.membership.overrides }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.churn }}
churn:
  {{- toYaml . | nindent 2 }}
{{- end }}
security:
{{- if .Values.keyring.enabled }}
  keyring_file: /etc/shoal/keyring/keyring
{{- else }}
  # keyring.enabled=false: gossip and the peer API unauthenticated, knowingly.
  insecure: true
{{- end }}
{{- if .Values.groups }}
{{- with .Values.defaultGroup }}
default_group: {{ . }}
{{- end }}
groups:
  {{- toYaml .Values.groups | nindent 2 }}
{{- else }}
default_group: heavy
groups:
  # The demo group: a loader that sleeps 400 ms and answers "Value of <key>".
  heavy:
    capacity: 64MiB
    loader:
      demo:
        delay: 400ms
{{- end }}
{{- end }}

{{- define "shoal.configChecksum" -}}
{{- include "shoal.configFile" . | sha256sum }}
{{- end }}

{{/* prometheus.io annotations and the config checksum, for pod templates. */}}
{{- define "shoal.podAnnotations" -}}
checksum/config: {{ include "shoal.configChecksum" . }}
{{- if .Values.prometheusAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The shoal container, as a list item. Used by the DaemonSet, the Deployment
and (through "shoal.sidecar") app pods.
*/}}
{{- define "shoal.container" -}}
- name: shoal
  image: {{ include "shoal.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  # A native sidecar: starts before the app's containers (once /healthz
  # answers) and stops after them.
  restartPolicy: Always
  {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: SHOAL_CONFIG
      value: /etc/shoal/config/shoal.yaml
    # The ports are in the config file too, but Kubernetes service links
    # would set these variables in pods that do not disable them (an app
    # pod with a Service "shoal-gossip" in its namespace gets
    # SHOAL_GOSSIP_PORT=udp://…); variables set here take precedence.
    - name: SHOAL_SERVICE_PORT
      value: {{ .Values.ports.service | quote }}
    - name: SHOAL_PEER_PORT
      value: {{ .Values.ports.peer | quote }}
    - name: SHOAL_GOSSIP_PORT
      value: {{ .Values.ports.gossip | quote }}
    - name: SHOAL_ADMIN_PORT
      value: {{ .Values.ports.admin | quote }}
    - name: SHOAL_LOG_FORMAT
      value: {{ .Values.logFormat }}
    - name: RUST_LOG
      value: {{ .Values.logLevel | quote }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if ne .Values.mode "sidecar" }}
    - name: shoal-http
      containerPort: {{ .Values.ports.service }}
      protocol: TCP
      {{- if and (eq .Values.mode "daemonset") .Values.daemonset.hostPort.enabled }}
      hostPort: {{ .Values.daemonset.hostPort.port }}
      {{- end }}
    {{- end }}
    - name: shoal-peer
      containerPort: {{ .Values.ports.peer }}
      protocol: TCP
    - name: shoal-gossip
      containerPort: {{ .Values.ports.gossip }}
      protocol: UDP
    - name: shoal-admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
  {{- with (int .Values.preStopSleepSeconds) }}
  # Pod deletion: wait here, still ready and still in the gossip cluster,
  # while endpoint removal reaches kube-proxy and the endpoint controllers;
  # then SIGTERM: /readyz 503, leave the cluster, hand the main cache to
  # the next owners, serve for node.drain, exit 0. (A sleep action: the
  # image has no shell.)
  lifecycle:
    preStop:
      sleep:
        seconds: {{ . }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.ports.admin }}
    {{- toYaml .Values.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.ports.admin }}
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ .Values.ports.admin }}
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: shoal-config
      mountPath: /etc/shoal/config
      readOnly: true
    {{- if .Values.keyring.enabled }}
    # A directory mount (no subPath), so a rotated Secret reaches the file
    # and the node re-reads it without a restart.
    - name: shoal-keyring
      mountPath: /etc/shoal/keyring
      readOnly: true
    {{- end }}
{{- end }}

{{/* The pod volumes the shoal container mounts, as list items. */}}
{{- define "shoal.volumes" -}}
- name: shoal-config
  configMap:
    name: {{ include "shoal.fullname" . }}
{{- if .Values.keyring.enabled }}
- name: shoal-keyring
  secret:
    secretName: {{ include "shoal.keyringSecret" . }}
    items:
      - key: {{ include "shoal.keyringKey" . }}
        path: keyring
    {{- if eq .Values.mode "sidecar" }}
    # The app's pod may set no fsGroup: readable by shoal's UID either way.
    defaultMode: 0444
    {{- else }}
    defaultMode: 0440
    {{- end }}
{{- end }}
{{- end }}

{{/*
For app pods (sidecar mode). With the shoal chart's context:
  initContainers:
    {{- include "shoal.sidecar" . | nindent 4 }}
  volumes:
    {{- include "shoal.sidecarVolumes" . | nindent 4 }}
and the pod label from "shoal.sidecarPodLabels". From a parent chart that
has shoal as a dependency, pass a context built from the subchart's values:
  (dict "Values" .Values.shoal "Release" .Release "Chart" (dict "Name" "shoal" "AppVersion" "0.1.0"))
*/}}
{{- define "shoal.sidecar" -}}
{{- include "shoal.container" . }}
{{- end }}

{{- define "shoal.sidecarVolumes" -}}
{{- include "shoal.volumes" . }}
{{- end }}

{{- define "shoal.sidecarPodLabels" -}}
{{ .Values.sidecar.memberLabel }}: {{ include "shoal.fullname" . }}
{{- end }}

{{- define "shoal.sidecarPodAnnotations" -}}
{{- include "shoal.podAnnotations" . }}
{{- end }}
