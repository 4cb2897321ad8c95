{{/* The release's name for maskline objects. */}}
{{- define "maskline.fullname" -}}
{{- if contains "maskline" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-maskline" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* Labels of every object; with "maskline.selector" on workloads, "maskline.metaLabels" elsewhere. */}}
{{- define "maskline.labels" -}}
app.kubernetes.io/part-of: maskline
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "maskline.metaLabels" -}}
{{ include "maskline.labels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "infer") */}}
{{- define "maskline.selector" -}}
app.kubernetes.io/name: maskline
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The system table's view (generated from contracts/subjects.py). */}}
{{- define "maskline.system" -}}
{{ .Files.Get "files/system.yaml" }}
{{- end -}}

{{/* Every NATS node, so a client fails over when one goes: the official chart's pods behind its headless service. */}}
{{- define "maskline.natsUrl" -}}
{{- $nodes := list -}}
{{- $name := printf "%s-nats" .Release.Name -}}
{{- range $i := until (int .Values.nats.config.cluster.replicas) -}}
{{- $nodes = append $nodes (printf "nats://%s-%d.%s-headless.%s.svc.cluster.local:4222" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $nodes -}}
{{- end -}}

{{- define "maskline.natsMonitoring" -}}
{{ printf "%s-nats-headless.%s.svc.cluster.local:8222" .Release.Name .Release.Namespace }}
{{- end -}}

{{- define "maskline.s3Repository" -}}
{{ printf "s3://%s/%s/%s" .Values.store.endpoint .Values.store.bucket .Values.triton.repositoryPrefix }}
{{- end -}}

{{/* Every service but the gateway (from the system table), as a JSON list for selectors. */}}
{{- define "maskline.workers" -}}
{{- $system := fromYaml (include "maskline.system" .) -}}
{{- $workers := list -}}
{{- range $service, $_ := $system.services -}}{{- if ne $service "gateway" -}}{{- $workers = append $workers $service -}}{{- end -}}{{- end -}}
{{- toJson $workers -}}
{{- end -}}
