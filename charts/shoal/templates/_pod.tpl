{{/* The pod spec shared by the DaemonSet and the Deployment. */}}
{{- define "shoal.podSpec" -}}
serviceAccountName: {{ include "shoal.serviceAccountName" . }}
# The token is needed only by the EndpointSlice cross-check.
automountServiceAccountToken: {{ .Values.kubernetesDiscovery.enabled }}
# Above preStopSleepSeconds + node.drain + peer.timeout (checked at render
# time), counted from the start of the preStop wait: the container first
# waits preStopSleepSeconds while endpoint removal propagates, then SIGTERM
# turns /readyz 503, leaves the gossip cluster, hands the main cache to the
# next owners and serves for node.drain (requests in flight may wait up to
# peer.timeout) before exiting 0.
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .Values.mode "deployment" }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
containers:
  {{- include "shoal.container" . | nindent 2 }}
volumes:
  {{- include "shoal.volumes" . | nindent 2 }}
{{- end }}
