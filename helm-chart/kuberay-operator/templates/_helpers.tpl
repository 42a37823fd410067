{{/*
Short name: nameOverride, else the chart name (63 characters at most).
*/}}
{{- define "kuberay-operator.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Value of the app.kubernetes.io/component label of the pod.
*/}}
{{- define "kuberay-operator.component" -}}
{{- .Values.componentOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects: fullnameOverride; else the release name
when it already contains the short name; else "<release>-<name>".
*/}}
{{- define "kuberay-operator.fullname" -}}
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

{{- define "kuberay-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels every object of the release carries.
*/}}
{{- define "kuberay-operator.labels" -}}
{{ include "kuberay-operator.selectorLabels" . }}
helm.sh/chart: {{ include "kuberay-operator.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Labels that select the operator pod (Deployment selector, Service selector).
*/}}
{{- define "kuberay-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberay-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "kuberay-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "kuberay-operator.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
Image reference: repository:tag, the tag defaulting to the appVersion.
*/}}
{{- define "kuberay-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/*
Namespaces the operator watches, comma-separated; empty for all namespaces.
An explicit watchNamespace list wins; otherwise singleNamespaceInstall means
the release namespace.
*/}}
{{- define "kuberay-operator.watchNamespaces" -}}
{{- if .Values.watchNamespace -}}
{{- join "," .Values.watchNamespace -}}
{{- else if .Values.singleNamespaceInstall -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
Renders a number the way the operator parses it: whole numbers without an
exponent or a fraction (YAML numbers reach templates as float64, and
10000000 would otherwise print as 1e+07).
*/}}
{{- define "kuberay-operator.number" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
Fails rendering on values the operator would reject at start, so a bad value
shows up at `helm install` instead of as a crash-looping pod.
*/}}
{{- define "kuberay-operator.validate" -}}
{{- if not (kindIs "invalid" .Values.reconcileConcurrency) -}}
{{- $rc := include "kuberay-operator.number" .Values.reconcileConcurrency -}}
{{- if not (regexMatch "^[1-9][0-9]*$" $rc) -}}
{{- fail (printf "values.reconcileConcurrency must be a positive integer, got %q" $rc) -}}
{{- end -}}
{{- if gt (float64 $rc) 65535.0 -}}
{{- fail (printf "values.reconcileConcurrency must be at most 65535, got %s" $rc) -}}
{{- end -}}
{{- end -}}
{{- $client := .Values.kubeClient | default dict -}}
{{- if not (kindIs "invalid" $client.qps) -}}
{{- $qps := include "kuberay-operator.number" $client.qps -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" $qps) -}}
{{- fail (printf "values.kubeClient.qps must be a positive number of requests per second (e.g. 100 or 50.5), got %q" $qps) -}}
{{- end -}}
{{- if not (gt (float64 $qps) 0.0) -}}
{{- fail (printf "values.kubeClient.qps must be greater than 0, got %s" $qps) -}}
{{- end -}}
{{- end -}}
{{- if not (kindIs "invalid" $client.burst) -}}
{{- $burst := include "kuberay-operator.number" $client.burst -}}
{{- if not (regexMatch "^[0-9]+$" $burst) -}}
{{- fail (printf "values.kubeClient.burst must be a positive integer, got %q" $burst) -}}
{{- end -}}
{{- if eq (float64 $burst) 0.0 -}}
{{- fail "values.kubeClient.burst must be at least 1 (the operator rejects a burst of 0), got 0" -}}
{{- end -}}
{{- if gt (float64 $burst) 4294967295.0 -}}
{{- fail (printf "values.kubeClient.burst must be at most 4294967295, got %s" $burst) -}}
{{- end -}}
{{- end -}}
{{- $logging := .Values.logging | default dict -}}
{{- range $key := list "stdoutEncoder" "fileEncoder" -}}
{{- $v := index $logging $key | default "" | toString -}}
{{- if not (has $v (list "" "json" "console")) -}}
{{- fail (printf "values.logging.%s must be json or console, got %q" $key $v) -}}
{{- end -}}
{{- end -}}
{{- $bs := .Values.batchScheduler | default dict -}}
{{- if and $bs.enabled $bs.name -}}
{{- fail "values.batchScheduler.enabled (deprecated) and values.batchScheduler.name are both set; set only batchScheduler.name" -}}
{{- end -}}
{{- with $bs.name -}}
{{- if not (has . (list "volcano" "yunikorn" "scheduler-plugins" "kai-scheduler")) -}}
{{- fail (printf "values.batchScheduler.name must be one of volcano, yunikorn, scheduler-plugins, kai-scheduler; got %q" .) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "useKubernetesProxy" "leaderElectionEnabled" -}}
{{- $v := index $.Values $key -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "bool" $v)) -}}
{{- fail (printf "values.%s must be true or false, got %v" $key $v) -}}
{{- end -}}
{{- end -}}
{{- $metricsEnabled := (.Values.metrics | default dict).enabled -}}
{{- if not (or (kindIs "invalid" $metricsEnabled) (kindIs "bool" $metricsEnabled)) -}}
{{- fail (printf "values.metrics.enabled must be true or false, got %v" $metricsEnabled) -}}
{{- end -}}
{{- range .Values.featureGates -}}
{{- if not .name -}}
{{- fail "values.featureGates: every entry needs a name (and enabled: true or false)" -}}
{{- end -}}
{{- $known := list "RayClusterStatusConditions" "RayJobDeletionPolicy" "RayMultiHostIndexing" "RayServiceIncrementalUpgrade" "RayCronJob" "SidecarSubmitterRestart" "RayClusterNetworkPolicy" "GCSFaultToleranceEmbeddedStorage" "RayClusterMTLS" "RayClusterHistoryServer" -}}
{{- if not (has (toString .name) $known) -}}
{{- fail (printf "values.featureGates: unknown feature gate %q; known gates: %s" (toString .name) (join ", " $known)) -}}
{{- end -}}
{{- if not (kindIs "bool" .enabled) -}}
{{- fail (printf "values.featureGates: %q needs enabled: true or false, got %v" (.name | toString) .enabled) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The --feature-gates argument, or nothing when featureGates is empty.
*/}}
{{- define "kuberay-operator.featureGatesArg" -}}
{{- $pairs := list -}}
{{- range .Values.featureGates -}}
{{- $pairs = append $pairs (printf "%s=%t" .name .enabled) -}}
{{- end -}}
{{- if $pairs -}}
--feature-gates={{ join "," $pairs }}
{{- end -}}
{{- end -}}

{{/*
What the operator does in the namespaces it manages, and no more: the rules
of crates/operator/src/rbac.rs, which say why each is needed, and which the
test suite checks this list and the operator's real requests against.
*/}}
{{- define "kuberay-operator.rules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, deletecollection, patch]
- apiGroups: [""]
  resources: [pods/resize]
  verbs: [patch]
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, watch, create, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, httproutes]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [list, watch, create, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [ray.io]
  resources: [rayclusters]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [ray.io]
  resources: [rayjobs]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [ray.io]
  resources: [raycronjobs]
  verbs: [list, watch]
- apiGroups: [ray.io]
  resources: [rayservices]
  verbs: [list, watch, patch]
- apiGroups: [ray.io]
  resources: [rayclusters/status, rayjobs/status, raycronjobs/status, rayservices/status]
  verbs: [patch]
- apiGroups: [ray.io]
  resources: [rayclusters/finalizers, rayjobs/finalizers, raycronjobs/finalizers, rayservices/finalizers]
  verbs: [update]
{{- end -}}
