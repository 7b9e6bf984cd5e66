{{/*
Render-time checks that values.schema.json cannot express (they compare values with each other).
A failed check fails `helm install/upgrade/template` with the message below:
  - the RayService name is a DNS-1035 label of at most 47 characters (KubeRay's limit);
  - each enabled worker group has minReplicas <= maxReplicas;
  - each model (after modelOverrides) has a backend of its role, a source unless its backend is
    silero or scripted, num_replicas or autoscaling_config (not both), min_replicas <=
    max_replicas;
  - one replica of every deployment (models and ingress) fits one Ray group: num_gpus <= the
    group's gpus, num_cpus <= the CPUs Ray sees on its pod, deployment.resources <= its
    rayResources (the head counts as a group with no GPU);
  - the GPUs all deployments need at min_replicas fit the worker groups: per group (for
    deployments that fit only that group) and in total, at most gpus x maxReplicas;
  - Serve deployment names are unique and serve.deploymentOverrides names existing ones;
  - rbac.create has a head-pod ServiceAccount to bind (serviceAccount.create or a name).
*/}}
{{- define "omniserve.validate" -}}
{{- $eps := 0.000001 -}}
{{- $fullname := include "omniserve.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- fail (printf "RayService name %q must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter): set fullnameOverride" $fullname) -}}
{{- end -}}
{{- if and .Values.rbac.create (not (include "omniserve.headServiceAccountName" .)) -}}
{{- fail "rbac.create binds the pod-reader Role to the head pod's ServiceAccount, but none is named: set serviceAccount.create=true, serviceAccount.name or serviceAccountName (or rbac.create=false)" -}}
{{- end -}}

{{/* Ray groups a replica can be placed on. */}}
{{- $groups := list -}}
{{- $headCpus := include "omniserve.rayCpus" .Values.head | float64 -}}
{{- $groups = append $groups (dict "name" "head" "gpus" 0.0 "cpus" $headCpus "rayResources" dict "maxReplicas" 1 "demand" 0.0) -}}
{{- range $name, $g := .Values.workerGroups -}}
{{- if and $g (ne (toString $g.enabled) "false") -}}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) -}}
{{- fail (printf "workerGroups.%s: minReplicas (%d) > maxReplicas (%d)" $name (int $g.minReplicas) (int $g.maxReplicas)) -}}
{{- end -}}
{{- $groups = append $groups (dict "name" $name "gpus" (float64 ($g.gpus | default 0)) "cpus" (include "omniserve.rayCpus" $g | float64) "rayResources" ($g.rayResources | default dict) "maxReplicas" (int $g.maxReplicas) "demand" 0.0) -}}
{{- end -}}
{{- end -}}

{{/* Every deployment: models (after overrides) then the ingress. */}}
{{- $deployments := list -}}
{{- $backends := include "omniserve.backends" . | fromJson -}}
{{- range $i, $m := include "omniserve.models" . | fromJsonArray -}}
{{- $label := printf "models[%d] (%s)" $i $m.id -}}
{{- if not (has $m.backend (get $backends $m.role | default list)) -}}
{{- fail (printf "%s: unknown %s backend %s (expected one of: %s)" $label $m.role $m.backend (join ", " (get $backends $m.role | default list))) -}}
{{- end -}}
{{- if and (not $m.source) (not (has $m.backend (list "silero" "scripted"))) -}}
{{- fail (printf "%s: backend %s needs a source (hub id, path, hf:// or package://)" $label $m.backend) -}}
{{- end -}}
{{- $deployments = append $deployments (dict "label" $label "name" (include "omniserve.deploymentName" $m) "d" ($m.deployment | default dict)) -}}
{{- end -}}
{{- $ingress := .Values.ingress | default dict -}}
{{- $ingressDeployment := $ingress.deployment | default (dict "num_replicas" 1 "num_cpus" 1) -}}
{{- $deployments = append $deployments (dict "label" "ingress" "name" ($ingressDeployment.name | default "Ingress") "d" $ingressDeployment) -}}

{{- $names := list -}}
{{- $total := 0.0 -}}
{{- range $deployments -}}
{{- $d := .d -}}
{{- if has .name $names -}}
{{- fail (printf "%s: Serve deployment name %s is used twice; set deployment.name on one model" .label .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- $auto := $d.autoscaling_config -}}
{{- if and (not (kindIs "invalid" $d.num_replicas)) $auto -}}
{{- fail (printf "%s: set deployment.num_replicas or deployment.autoscaling_config, not both (set the other to null)" .label) -}}
{{- end -}}
{{- $min := 1 -}}
{{- if not (kindIs "invalid" $d.num_replicas) -}}
{{- $min = int $d.num_replicas -}}
{{- else if $auto -}}
{{- $min = int (hasKey $auto "min_replicas" | ternary $auto.min_replicas 1) -}}
{{- if and (hasKey $auto "max_replicas") (gt $min (int $auto.max_replicas)) -}}
{{- fail (printf "%s: autoscaling_config.min_replicas (%d) > max_replicas (%d)" .label $min (int $auto.max_replicas)) -}}
{{- end -}}
{{- end -}}
{{- $gpus := float64 ($d.num_gpus | default 0) -}}
{{- $cpus := float64 (hasKey $d "num_cpus" | ternary $d.num_cpus 1) -}}
{{- $res := $d.resources | default dict -}}
{{- $fits := list -}}
{{- range $g := $groups -}}
{{- $ok := and (gt (int $g.maxReplicas) 0) (le $gpus (addf $g.gpus $eps)) (or (lt $g.cpus 0.0) (le $cpus (addf $g.cpus $eps))) -}}
{{- range $k, $v := $res -}}
{{- if lt (float64 (get $g.rayResources $k | default 0)) (subf (float64 $v) $eps) -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- if $ok -}}
{{- $fits = append $fits $g -}}
{{- end -}}
{{- end -}}
{{- if not $fits -}}
{{- $have := list -}}
{{- range $groups -}}
{{- $have = append $have (printf "%s: gpus=%v cpus=%v rayResources=%s maxReplicas=%d" .name .gpus (ternary "?" (toString .cpus) (lt .cpus 0.0)) (toJson .rayResources) (int .maxReplicas)) -}}
{{- end -}}
{{- fail (printf "%s: no Ray group can hold one replica (num_gpus=%v, num_cpus=%v, resources=%s); groups: %s" .label $gpus $cpus (toJson $res) (join "; " $have)) -}}
{{- end -}}
{{- $need := mulf $gpus $min -}}
{{- $total = addf $total $need -}}
{{- if eq (len $fits) 1 -}}
{{- $only := first $fits -}}
{{- $_ := set $only "demand" (addf $only.demand $need) -}}
{{- end -}}
{{- end -}}

{{- $capacity := 0.0 -}}
{{- range $groups -}}
{{- $cap := mulf .gpus .maxReplicas -}}
{{- $capacity = addf $capacity $cap -}}
{{- if gt .demand (addf $cap $eps) -}}
{{- fail (printf "workerGroups.%s: deployments that only fit this group need %v GPUs at min_replicas, but it holds at most %v (gpus x maxReplicas)" .name .demand $cap) -}}
{{- end -}}
{{- end -}}
{{- if gt $total (addf $capacity $eps) -}}
{{- fail (printf "the deployments need %v GPUs at min_replicas, but the worker groups hold at most %v (sum of gpus x maxReplicas)" $total $capacity) -}}
{{- end -}}

{{- range $name, $_ := .Values.serve.deploymentOverrides -}}
{{- if not (has $name $names) -}}
{{- fail (printf "serve.deploymentOverrides.%s: no such Serve deployment (deployments: %s)" $name (join ", " $names)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
