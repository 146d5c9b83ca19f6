{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "release-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release name, plus the chart name unless it already contains it. */}}
{{- define "release-bot.fullname" -}}
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

{{- define "release-bot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "release-bot.labels" -}}
helm.sh/chart: {{ include "release-bot.chart" . }}
{{ include "release-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: release-bot
{{- end }}

{{/* Selector labels: stable for the life of the release (a Deployment's selector is immutable). */}}
{{- define "release-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "release-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "release-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "release-bot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "release-bot.secretName" -}}
{{- default (include "release-bot.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The bot's image; the chart ships none, so the repository is required. */}}
{{- define "release-bot.image" -}}
{{- $repository := required "image.repository is required: build the image from the repository's Dockerfile, push it, and set image.repository (and image.tag or image.digest); see docs/deploy.md" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The catalog's apps of this cluster as the bot sees them, as a JSON object (use with fromJson): an app
with `environments` becomes one app per environment, named <app>-<env>, whose fields replace the
app's (as bot/catalog.py does). Apps of another cluster (`cluster` naming one of catalog.clusters
that is not `in_cluster`) are left out: their rights are granted in their own cluster. Fails with a
clear message when there are none in the catalog.
*/}}
{{- define "release-bot.apps" -}}
{{- $apps := (.Values.catalog.apps | default dict) }}
{{- if not $apps }}
{{- fail "catalog.apps is empty: give the bot at least one app to release (see docs/deploy.md)" }}
{{- end }}
{{- $out := dict }}
{{- range $name, $app := $apps }}
{{- if hasKey $app "environments" }}
{{- $base := omit $app "environments" }}
{{- range $env, $fields := $app.environments }}
{{- $merged := deepCopy $base }}
{{- range $key, $value := $fields }}
{{- $_ := set $merged $key $value }}
{{- end }}
{{- $_ := set $out (printf "%s-%s" $name $env) $merged }}
{{- end }}
{{- else }}
{{- $_ := set $out $name $app }}
{{- end }}
{{- end }}
{{- range $name, $app := $out }}
{{- $_ := required (printf "catalog app %s needs a namespace" $name) $app.namespace }}
{{- if not $app.deployments }}
{{- $_ := required (printf "catalog app %s needs a deployment (or deployments)" $name) $app.deployment }}
{{- end }}
{{- if and (has "bluegreen" ($app.strategies | default (list "rolling"))) (not $app.service) }}
{{- fail (printf "catalog app %s: blue-green needs `service` (the Service whose selector is switched)" $name) }}
{{- end }}
{{- end }}
{{- $clusters := .Values.catalog.clusters | default dict }}
{{- $local := dict }}
{{- range $name, $app := $out }}
{{- $cluster := $app.cluster | default "default" }}
{{- if or (eq $cluster "default") (and (hasKey $clusters $cluster) (index $clusters $cluster).in_cluster) }}
{{- $_ := set $local $name $app }}
{{- else if not (hasKey $clusters $cluster) }}
{{- fail (printf "catalog app %s: cluster %q is not in catalog.clusters" $name $cluster) }}
{{- end }}
{{- end }}
{{- toJson $local }}
{{- end }}

{{/*
The namespaces the bot releases into, as a JSON list (use with fromJsonArray): .Values.namespaces,
or the namespaces of the catalog's apps. Every app's namespace must be covered, or the bot would
get 403 Forbidden in the middle of a release.
*/}}
{{- define "release-bot.namespaces" -}}
{{- $apps := include "release-bot.apps" . | fromJson }}
{{- $fromCatalog := list }}
{{- range $name, $app := $apps }}
{{- $fromCatalog = append $fromCatalog $app.namespace }}
{{- end }}
{{- $namespaces := $fromCatalog }}
{{- if .Values.namespaces }}
{{- $namespaces = .Values.namespaces }}
{{- range $ns := $fromCatalog }}
{{- if not (has $ns $namespaces) }}
{{- fail (printf "namespaces does not include %q, the namespace of a catalog app: add it, or leave namespaces empty to derive them from the catalog" $ns) }}
{{- end }}
{{- end }}
{{- end }}
{{- $namespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* terminationGracePeriodSeconds: longer than the drain, so SIGKILL never lands mid-drain. */}}
{{- define "release-bot.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.bot.drainSeconds | int) .Values.terminationGraceExtraSeconds }}
{{- end }}

{{- define "release-bot.pdbApiVersion" -}}
{{- if .Values.podDisruptionBudget.apiVersion }}
{{- .Values.podDisruptionBudget.apiVersion }}
{{- else if .Capabilities.APIVersions.Has "policy/v1" }}
{{- "policy/v1" }}
{{- else }}
{{- "policy/v1beta1" }}
{{- end }}
{{- end }}

{{/*
The label matchers that select this release's series in Prometheus: by default the job and
namespace labels the chart's ServiceMonitor gives its targets (job = the Service's name).
*/}}
{{- define "release-bot.seriesSelector" -}}
{{- if .Values.metrics.prometheusRule.seriesSelector }}
{{- .Values.metrics.prometheusRule.seriesSelector }}
{{- else }}
{{- printf "job=%q,namespace=%q" (include "release-bot.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}
