{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "omniserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 47 | trimSuffix "-" -}}
{{- end -}}

{{/* The RayService name: KubeRay appends "-xxxxx" for its RayCluster, hence 47 characters. */}}
{{- define "omniserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "omniserve.serveServiceName" -}}
{{- printf "%s-serve-svc" (include "omniserve.fullname" .) -}}
{{- end -}}

{{- define "omniserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "omniserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of chart-managed objects. Pod templates get only the selector labels: anything that
changes with the chart version would change the RayCluster spec and roll out a new cluster. */}}
{{- define "omniserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "omniserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* "repository:tag" for (list $root $override); the tag defaults to the chart's appVersion. */}}
{{- define "omniserve.image" -}}
{{- $root := index . 0 -}}
{{- $ov := index . 1 | default dict -}}
{{- $repo := $ov.repository | default $root.Values.image.repository -}}
{{- $tag := $ov.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "omniserve.apiKeysSecret" -}}
{{- .Values.apiKeys.existingSecret | default (printf "%s-api-keys" (include "omniserve.fullname" .)) -}}
{{- end -}}

{{- define "omniserve.hubTokenSecret" -}}
{{- .Values.hubToken.existingSecret | default (printf "%s-hub-token" (include "omniserve.fullname" .)) -}}
{{- end -}}

{{/* The head pod's ServiceAccount (see values serviceAccount); "" leaves the choice to KubeRay. */}}
{{- define "omniserve.headServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (printf "%s-head" (include "omniserve.fullname" .)) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default .Values.serviceAccountName -}}
{{- end -}}
{{- end -}}

{{- define "omniserve.modelCacheClaim" -}}
{{- .Values.modelCache.persistentVolumeClaim.existingClaim | default (printf "%s-model-cache" (include "omniserve.fullname" .)) -}}
{{- end -}}

{{/* Application args ---------------------------------------------------------------------- */}}

{{/* Deep-merges map `src` into map `dst` in place ((list dst src)); a null in src deletes the
key. (Sprig's mergeOverwrite skips 0, false and "" in src, so it cannot set min_replicas: 0.) */}}
{{- define "omniserve.deepMerge" -}}
{{- $dst := index . 0 -}}
{{- $src := index . 1 -}}
{{- range $k, $v := $src -}}
{{- if kindIs "invalid" $v -}}
{{- $_ := unset $dst $k -}}
{{- else if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "omniserve.deepMerge" (list (get $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k (deepCopy $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* `models` with `modelOverrides` merged in, as a JSON list. */}}
{{- define "omniserve.models" -}}
{{- $overrides := .Values.modelOverrides | default dict -}}
{{- $ids := list -}}
{{- $out := list -}}
{{- range $m := .Values.models -}}
{{- $m = deepCopy $m -}}
{{- $ids = append $ids $m.id -}}
{{- with get $overrides $m.id -}}
{{- include "omniserve.deepMerge" (list $m .) -}}
{{- end -}}
{{- $out = append $out $m -}}
{{- end -}}
{{- range $id, $_ := $overrides -}}
{{- if not (has $id $ids) -}}
{{- fail (printf "modelOverrides.%s: no model has this id (models: %s)" $id (join ", " $ids)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Backends per role. Keep in step with models/registry.py BACKENDS (tests compare them). */}}
{{- define "omniserve.backends" -}}
{{- dict "llm" (list "transformers" "scripted") "embeddings" (list "sentence-transformers") "stt" (list "faster-whisper" "transformers-whisper" "nemo") "tts" (list "piper" "f5-tts") "vad" (list "silero") | toJson -}}
{{- end -}}

{{/* The Serve deployment name of a model (its deployment.name, else the role's server). Keep in
step with deployments/config.py DEFAULT_DEPLOYMENT_NAMES. */}}
{{- define "omniserve.deploymentName" -}}
{{- $defaults := dict "llm" "LLMServer" "embeddings" "EmbeddingServer" "stt" "STTServer" "tts" "TTSServer" "vad" "VADServer" -}}
{{- $d := .deployment | default dict -}}
{{- $d.name | default (get $defaults .role) -}}
{{- end -}}

{{/* The application's args: AppConfig (deployments/config.py) as JSON. */}}
{{- define "omniserve.appArgs" -}}
{{- $args := dict "models" (include "omniserve.models" . | fromJsonArray) -}}
{{- range $key := list "cascade" "ingress" "server" "admission" "realtime" -}}
{{- with get $.Values $key -}}
{{- $_ := set $args $key . -}}
{{- end -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/* The autoscaling_config Serve receives for a model deployment, as JSON, from its plain
autoscaling_config: (dict "config" <autoscaling_config> "countWaiting" <bool>). This MIRRORS
session_autoscaling() in deployments/scaling/options.py, which build_app applies to every
autoscaled model deployment (keep the two in step; tests/test_helm_chart.py compares them).
Serve gets min_replicas 0, downscale_to_zero_delay_s 0 and initial_replicas = the configured
floor (unless set); the policy SessionAutoscalingPolicy gets the floor, the delay before scaling
to zero (downscale_to_zero_delay_s, else downscale_delay_s, else Serve's default 600 s) and
count_waiting (admission.scale_on_queue). A config that names its own `policy` is returned as
it is. */}}
{{- define "omniserve.sessionAutoscaling" -}}
{{- $out := deepCopy .config -}}
{{- if not (hasKey $out "policy") -}}
{{- $floor := 1 -}}
{{- if hasKey $out "min_replicas" -}}
{{- $floor = int $out.min_replicas -}}
{{- end -}}
{{- $toZero := index $out "downscale_to_zero_delay_s" -}}
{{- if kindIs "invalid" $toZero -}}
{{- $toZero = index $out "downscale_delay_s" -}}
{{- end -}}
{{- if kindIs "invalid" $toZero -}}
{{- $toZero = 600.0 -}}{{- /* options.SERVE_DOWNSCALE_DELAY_S */ -}}
{{- end -}}
{{- if not (hasKey $out "initial_replicas") -}}
{{- $_ := set $out "initial_replicas" $floor -}}
{{- end -}}
{{- $_ := set $out "min_replicas" 0 -}}
{{- $_ := set $out "downscale_to_zero_delay_s" 0.0 -}}
{{- $kwargs := dict "min_replicas" $floor "to_zero_delay_s" (float64 $toZero) "count_waiting" .countWaiting -}}
{{- $_ := set $out "policy" (dict "policy_function" "deployments.scaling.policy:SessionAutoscalingPolicy" "policy_kwargs" $kwargs) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The application's `deployments` entries: the replica settings of every deployment whose
args set them (autoscaling_config or num_replicas), as Serve overrides, with
serve.deploymentOverrides applied on top. A model's autoscaling_config (from its args or from
deploymentOverrides, both plain) is rendered the way build_app hands it to Serve
(omniserve.sessionAutoscaling): an entry replaces the code's whole autoscaling_config, so a
plain one would drop the session policy. The ingress entry stays plain (build_app gives the
ingress no policy). Serve reads these over the options build_app sets, and editing an existing
entry is a lightweight update (no replica restart) unless it changes the `policy` block (the
floor, the delay to zero): Ray Serve 2.60 hashes the entries' autoscaling policies into the
application's code version, so adding the first autoscaling_config entry of a deployment, or
changing its policy, replaces every replica. Hence one entry per deployment from the start. */}}
{{- define "omniserve.serveDeployments" -}}
{{- $entries := list -}}
{{- $sources := list -}}
{{- range $m := include "omniserve.models" . | fromJsonArray -}}
{{- $sources = append $sources (dict "name" (include "omniserve.deploymentName" $m) "d" ($m.deployment | default dict) "model" true) -}}
{{- end -}}
{{- $ingress := .Values.ingress | default dict -}}
{{- $ingressDeployment := $ingress.deployment | default dict -}}
{{- $sources = append $sources (dict "name" ($ingressDeployment.name | default "Ingress") "d" $ingressDeployment "model" false) -}}
{{- $overrides := .Values.serve.deploymentOverrides | default dict -}}
{{- $admission := .Values.admission | default dict -}}
{{- $countWaiting := true -}}{{- /* AdmissionConfig.scale_on_queue's default */ -}}
{{- if hasKey $admission "scale_on_queue" -}}
{{- $countWaiting = $admission.scale_on_queue -}}
{{- end -}}
{{- range $sources -}}
{{- $entry := dict -}}
{{- if .d.autoscaling_config -}}
{{- $_ := set $entry "autoscaling_config" (deepCopy .d.autoscaling_config) -}}
{{- else if not (kindIs "invalid" .d.num_replicas) -}}
{{- $_ := set $entry "num_replicas" .d.num_replicas -}}
{{- end -}}
{{- with get $overrides .name -}}
{{- if hasKey . "autoscaling_config" -}}
{{- $_ := unset $entry "num_replicas" -}}
{{- else if hasKey . "num_replicas" -}}
{{- /* Serve keeps autoscaling unless the entry nulls it */ -}}
{{- $_ := set $entry "autoscaling_config" nil -}}
{{- end -}}
{{- range $k, $v := . -}}
{{- $_ := set $entry $k (deepCopy $v) -}}
{{- end -}}
{{- end -}}
{{- if and .model (kindIs "map" (index $entry "autoscaling_config")) -}}
{{- $_ := set $entry "autoscaling_config" (include "omniserve.sessionAutoscaling" (dict "config" $entry.autoscaling_config "countWaiting" $countWaiting) | fromJson) -}}
{{- end -}}
{{- if $entry -}}
{{- $_ := set $entry "name" .name -}}
{{- $entries = append $entries $entry -}}
{{- end -}}
{{- end -}}
{{- toJson $entries -}}
{{- end -}}

{{/* serveConfigV2: a Ray Serve config file (ServeDeploySchema), as YAML. */}}
{{- define "omniserve.serveConfig" -}}
{{- $app := dict "name" .Values.serve.applicationName "route_prefix" .Values.serve.routePrefix "import_path" "deployments.app:build_app" "args" (include "omniserve.appArgs" . | fromJson) -}}
{{- with include "omniserve.serveDeployments" . | fromJsonArray -}}
{{- $_ := set $app "deployments" . -}}
{{- end -}}
{{- $http := deepCopy (.Values.serve.httpOptions | default dict) -}}
{{- $_ := set $http "host" "0.0.0.0" -}}
{{- $_ := set $http "port" (int .Values.serve.port) -}}
{{- $config := dict "proxy_location" .Values.serve.proxyLocation "http_options" $http "applications" (list $app) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Ray pods ---------------------------------------------------------------------------------- */}}

{{/* CPUs Ray sees on a group's pod (num-cpus, else the container's cpu limit, else its request),
or -1 when none is set (Ray then counts the node's cores, unknown here). */}}
{{- define "omniserve.rayCpus" -}}
{{- $params := .rayStartParams | default dict -}}
{{- $res := .resources | default dict -}}
{{- $q := "" -}}
{{- if hasKey $params "num-cpus" -}}
{{- $q = toString (index $params "num-cpus") -}}
{{- else if hasKey ($res.limits | default dict) "cpu" -}}
{{- $q = toString (index $res.limits "cpu") -}}
{{- else if hasKey ($res.requests | default dict) "cpu" -}}
{{- $q = toString (index $res.requests "cpu") -}}
{{- end -}}
{{- if not $q -}}
-1
{{- else if hasSuffix "m" $q -}}
{{- divf (trimSuffix "m" $q | float64) 1000 -}}
{{- else -}}
{{- $q | float64 -}}
{{- end -}}
{{- end -}}

{{- define "omniserve.env" -}}
- name: HF_HOME
  value: {{ printf "%s/huggingface" (trimSuffix "/" .Values.modelCache.mountPath) | quote }}
- name: OMNISERVE_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "omniserve.apiKeysSecret" . }}
      key: {{ .Values.apiKeys.secretKey }}
      optional: {{ not (or .Values.apiKeys.existingSecret .Values.apiKeys.keys) }}
- name: OMNISERVE_ADMIN_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "omniserve.apiKeysSecret" . }}
      key: {{ .Values.apiKeys.adminSecretKey }}
      optional: {{ not .Values.apiKeys.adminKeys }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "omniserve.hubTokenSecret" . }}
      key: {{ .Values.hubToken.secretKey }}
      optional: {{ not (or .Values.hubToken.existingSecret .Values.hubToken.token) }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "omniserve.volumeMounts" -}}
- name: model-cache
  mountPath: {{ .Values.modelCache.mountPath }}
{{- if .Values.sharedMemory.enabled }}
- name: dshm
  mountPath: /dev/shm
{{- end }}
{{- end -}}

{{- define "omniserve.volumes" -}}
- name: model-cache
{{- if .Values.modelCache.persistentVolumeClaim.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "omniserve.modelCacheClaim" . }}
{{- else }}
  emptyDir:
    {{- with .Values.modelCache.emptyDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }} {}
    {{- end }}
{{- end }}
{{- if .Values.sharedMemory.enabled }}
- name: dshm
  emptyDir:
    medium: Memory
    {{- with .Values.sharedMemory.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* Pod template of a Ray group: (dict "root" $ "group" $g "name" "head"|groupName "head" bool) */}}
{{- define "omniserve.podTemplate" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{- $head := .head -}}
metadata:
  labels:
    {{- include "omniserve.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ ternary "ray-head" "ray-worker" $head }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $g.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := merge (deepCopy ($g.annotations | default dict)) ($root.Values.podAnnotations | default dict) }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with ternary (include "omniserve.headServiceAccountName" $root) $root.Values.serviceAccountName $head }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" $head }}
      image: {{ include "omniserve.image" (list $root $g.image) }}
      imagePullPolicy: {{ ($g.image | default dict).pullPolicy | default $root.Values.image.pullPolicy }}
      ports:
        {{- if $head }}
        - {containerPort: 6379, name: gcs-server}
        - {containerPort: 8265, name: dashboard}
        - {containerPort: 10001, name: client}
        {{- end }}
        - {containerPort: {{ int $root.Values.serve.port }}, name: serve}
        - {containerPort: 8080, name: metrics}
      env:
        {{- include "omniserve.env" $root | nindent 8 }}
      {{- $resources := deepCopy ($g.resources | default dict) }}
      {{- if and (not $head) (gt (int ($g.gpus | default 0)) 0) }}
      {{- $limits := $resources.limits | default dict }}
      {{- $_ := set $limits $root.Values.gpuResourceName (toString (int $g.gpus)) }}
      {{- $_ := set $resources "limits" $limits }}
      {{- end }}
      {{- with $resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- include "omniserve.volumeMounts" $root | nindent 8 }}
      {{- with $root.Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumes:
    {{- include "omniserve.volumes" $root | nindent 4 }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
