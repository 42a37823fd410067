{{/*
Short name: nameOverride, else the chart name.
*/}}
{{- define "ray-cluster.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Name of the RayCluster: fullnameOverride; else the release name when it
already contains the short name; else "<release>-<name>".
*/}}
{{- define "ray-cluster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $short := .Values.nameOverride | default .Chart.Name -}}
{{- if contains $short .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $short | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ray-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of the RayCluster and of every Ray pod.
*/}}
{{- define "ray-cluster.labels" -}}
app.kubernetes.io/name: {{ include "ray-cluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ include "ray-cluster.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
rayStartParams of a group (dict "group" <values>): every value as a string,
as the CRD wants. initArgs is KubeRay's deprecated alias; rayStartParams
wins where both set a key.
*/}}
{{- define "ray-cluster.rayStartParams" -}}
{{- $params := merge (dict) (.group.rayStartParams | default dict) (.group.initArgs | default dict) -}}
{{- if $params -}}
{{- range $key, $value := $params }}
{{ $key }}: {{ $value | toString | quote }}
{{- end -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
Pod template of a group: (dict "root" $ "group" <values> "container" <name>).
*/}}
{{- define "ray-cluster.podTemplate" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{- $image := $g.image | default dict -}}
{{- $labels := merge (dict) ($g.labels | default dict) (include "ray-cluster.labels" $root | fromYaml) -}}
{{- $resources := $g.resources | default dict -}}
{{- if and $g.resourceClaims (not (hasKey $resources "claims")) -}}
{{- $claims := list -}}
{{- range $g.resourceClaims -}}
{{- $claims = append $claims (dict "name" .name) -}}
{{- end -}}
{{- $resources = merge (dict "claims" $claims) $resources -}}
{{- end -}}
{{- $env := concat ($root.Values.common.containerEnv | default list) ($g.containerEnv | default list) -}}
metadata:
  labels:
    {{- toYaml $labels | nindent 4 }}
  {{- with $g.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $g.restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  {{- with $g.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if not (kindIs "invalid" $g.priority) }}
  priority: {{ include "ray-cluster.int" $g.priority }}
  {{- end }}
  {{- with $g.dnsConfig }}
  dnsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      image: {{ printf "%s:%s" ($image.repository | default $root.Values.image.repository) ($image.tag | default $root.Values.image.tag | toString) | quote }}
      {{- with $image.pullPolicy | default $root.Values.image.pullPolicy }}
      imagePullPolicy: {{ . }}
      {{- end }}
      {{- with $g.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.volumeMounts }}
      volumeMounts:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with $g.sidecarContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $g.volumes }}
  volumes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.resourceClaims }}
  resourceClaims:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
A whole number as digits (YAML numbers reach templates as float64, which
would print 2147483647 as 2.147483647e+09).
*/}}
{{- define "ray-cluster.int" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
One entry of workerGroupSpecs: (dict "root" $ "group" <values> "name" <groupName>).
minReplicas defaults to 0, maxReplicas to 2147483647 and numOfHosts to 1
when the key is absent (an explicit 0 is kept).
*/}}
{{- define "ray-cluster.workerGroup" -}}
{{- $g := .group -}}
- groupName: {{ .name | quote }}
  {{- if not (kindIs "invalid" $g.replicas) }}
  replicas: {{ include "ray-cluster.int" $g.replicas }}
  {{- end }}
  minReplicas: {{ if kindIs "invalid" $g.minReplicas }}0{{ else }}{{ include "ray-cluster.int" $g.minReplicas }}{{ end }}
  maxReplicas: {{ if kindIs "invalid" $g.maxReplicas }}2147483647{{ else }}{{ include "ray-cluster.int" $g.maxReplicas }}{{ end }}
  numOfHosts: {{ if kindIs "invalid" $g.numOfHosts }}1{{ else }}{{ include "ray-cluster.int" $g.numOfHosts }}{{ end }}
  rayStartParams:
    {{- include "ray-cluster.rayStartParams" (dict "group" $g) | nindent 4 }}
  template:
    {{- include "ray-cluster.podTemplate" (dict "root" .root "group" $g "container" "ray-worker") | nindent 4 }}
{{- end -}}
